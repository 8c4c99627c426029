"""CIFAR-10, the DFA paper's conv net, exact backpropagation (B = W).

    fajax train --config=cifar10_1_bp --workdir=runs/cifar10_1_bp
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('bp')
