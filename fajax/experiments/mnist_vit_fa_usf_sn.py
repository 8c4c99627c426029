"""MNIST, the small vision transformer, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    fajax train --config=mnist_vit_fa_usf_sn --workdir=runs/mnist_vit_fa_usf_sn
"""

from fajax.configs import mnist_vit


def get_config():
  return mnist_vit.get_config('fa_usf_sn')
