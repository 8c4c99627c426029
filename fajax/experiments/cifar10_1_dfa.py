"""CIFAR-10, the DFA paper's conv net, direct feedback alignment: every hidden layer gets B_l·e from the output error.

    fajax train --config=cifar10_1_dfa --workdir=runs/cifar10_1_dfa
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('dfa')
