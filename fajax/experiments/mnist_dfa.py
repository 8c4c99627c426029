"""MNIST, LeNet-5, direct feedback alignment: every hidden layer gets B_l·e from the output error.

    fajax train --config=mnist_dfa --workdir=runs/mnist_dfa
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('dfa')
