"""MNIST, LeNet-5, dense feedback alignment: every hidden layer gets feedback from all layers above.

    fajax train --config=mnist_densefa --workdir=runs/mnist_densefa
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('densefa')
