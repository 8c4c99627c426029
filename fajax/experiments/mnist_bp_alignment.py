"""MNIST, LeNet-5, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    fajax train --config=mnist_bp_alignment --workdir=runs/mnist_bp_alignment
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('bp_alignment')
