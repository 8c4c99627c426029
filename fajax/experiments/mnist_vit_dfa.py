"""MNIST, the small vision transformer, direct feedback alignment: the input of every feedback
layer but the patch embedding gets B·e from the output error.

    fajax train --config=mnist_vit_dfa --workdir=runs/mnist_vit_dfa
"""

from fajax.configs import mnist_vit


def get_config():
  return mnist_vit.get_config('dfa')
