"""MNIST, LeNet-5, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    python -m fajax.main --config=experiments/mnist_bp_alignment.py --workdir=runs/mnist_bp_alignment
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('bp_alignment')
