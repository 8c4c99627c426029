"""CIFAR-10, the DFA paper's conv net, feedback alignment: fixed random B from W's initializer.

    fajax train --config=cifar10_1_fa --workdir=runs/cifar10_1_fa
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('fa')
