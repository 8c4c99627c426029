"""CIFAR-10, ResNet-20, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    python -m fajax.main --config=experiments/cifar10_2_fa_usf_init.py --workdir=runs/cifar10_2_fa_usf_init
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('fa_usf_init')
