"""CIFAR-10, ResNet-20, exact backpropagation (B = W).

    fajax train --config=cifar10_2_bp --workdir=runs/cifar10_2_bp
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('bp')
