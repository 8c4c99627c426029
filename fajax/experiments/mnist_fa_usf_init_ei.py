"""MNIST, LeNet-5, uSF Init. with E/I: no forward weight ever changes sign.

    fajax train --config=mnist_fa_usf_init_ei --workdir=runs/mnist_fa_usf_init_ei
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_init_ei')
