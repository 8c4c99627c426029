"""CIFAR-10, the DFA paper's conv net, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    fajax train --config=cifar10_1_fa_usf_init --workdir=runs/cifar10_1_fa_usf_init
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('fa_usf_init')
