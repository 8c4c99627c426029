"""CIFAR-10, ResNet-20, uSF Init. with E/I: no forward weight ever changes sign.

    fajax train --config=cifar10_2_fa_usf_init_ei --workdir=runs/cifar10_2_fa_usf_init_ei
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('fa_usf_init_ei')
