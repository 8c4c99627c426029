"""CIFAR-10, the DFA paper's conv net, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    fajax train --config=cifar10_1_bp_alignment --workdir=runs/cifar10_1_bp_alignment
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('bp_alignment')
