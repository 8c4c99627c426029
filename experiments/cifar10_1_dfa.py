"""CIFAR-10, the DFA paper's conv net, direct feedback alignment: every hidden layer gets B_l·e from the output error.

    python -m fajax.main --config=experiments/cifar10_1_dfa.py --workdir=runs/cifar10_1_dfa
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('dfa')
