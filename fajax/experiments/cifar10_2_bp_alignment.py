"""CIFAR-10, ResNet-20, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    fajax train --config=cifar10_2_bp_alignment --workdir=runs/cifar10_2_bp_alignment
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('bp_alignment')
