"""MNIST, LeNet-5, uSF Init. with E/I: no forward weight ever changes sign.

    python -m fajax.main --config=experiments/mnist_fa_usf_init_ei.py --workdir=runs/mnist_fa_usf_init_ei
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_init_ei')
