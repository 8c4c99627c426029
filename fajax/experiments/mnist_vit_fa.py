"""MNIST, the small vision transformer, feedback alignment: B fixed and random.

    fajax train --config=mnist_vit_fa --workdir=runs/mnist_vit_fa
"""

from fajax.configs import mnist_vit


def get_config():
  return mnist_vit.get_config('fa')
