"""MNIST, LeNet-5, exact backpropagation (B = W).

    python -m fajax.main --config=experiments/mnist_bp.py --workdir=runs/mnist_bp
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('bp')
