"""MNIST, LeNet-5, feedback alignment: fixed random B from W's initializer.

    python -m fajax.main --config=experiments/mnist_fa.py --workdir=runs/mnist_fa
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa')
