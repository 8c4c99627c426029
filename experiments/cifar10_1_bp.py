"""CIFAR-10, the DFA paper's conv net, exact backpropagation (B = W).

    python -m fajax.main --config=experiments/cifar10_1_bp.py --workdir=runs/cifar10_1_bp
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('bp')
