"""MNIST, LeNet-5, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    fajax train --config=mnist_fa_usf_init --workdir=runs/mnist_fa_usf_init
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_init')
