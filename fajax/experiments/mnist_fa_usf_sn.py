"""MNIST, LeNet-5, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    fajax train --config=mnist_fa_usf_sn --workdir=runs/mnist_fa_usf_sn
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_sn')
