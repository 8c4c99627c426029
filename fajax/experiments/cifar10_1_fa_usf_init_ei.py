"""CIFAR-10, the DFA paper's conv net, uSF Init. with E/I: no forward weight ever changes sign.

    fajax train --config=cifar10_1_fa_usf_init_ei --workdir=runs/cifar10_1_fa_usf_init_ei
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('fa_usf_init_ei')
