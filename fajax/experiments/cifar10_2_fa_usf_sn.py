"""CIFAR-10, ResNet-20, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    fajax train --config=cifar10_2_fa_usf_sn --workdir=runs/cifar10_2_fa_usf_sn
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('fa_usf_sn')
