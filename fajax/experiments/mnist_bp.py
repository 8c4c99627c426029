"""MNIST, LeNet-5, exact backpropagation (B = W).

    fajax train --config=mnist_bp --workdir=runs/mnist_bp
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('bp')
