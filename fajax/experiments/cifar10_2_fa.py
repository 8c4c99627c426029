"""CIFAR-10, ResNet-20, feedback alignment: fixed random B from W's initializer.

    fajax train --config=cifar10_2_fa --workdir=runs/cifar10_2_fa
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('fa')
