"""CIFAR-10, ResNet-20, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    fajax train --config=cifar10_2_fa_usf_init --workdir=runs/cifar10_2_fa_usf_init
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('fa_usf_init')
