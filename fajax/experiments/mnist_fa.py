"""MNIST, LeNet-5, feedback alignment: fixed random B from W's initializer.

    fajax train --config=mnist_fa --workdir=runs/mnist_fa
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa')
