"""MNIST, LeNet-5, dense feedback alignment: every hidden layer gets feedback from all layers above.

    python -m fajax.main --config=experiments/mnist_densefa.py --workdir=runs/mnist_densefa
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('densefa')
