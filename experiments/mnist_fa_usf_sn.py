"""MNIST, LeNet-5, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    python -m fajax.main --config=experiments/mnist_fa_usf_sn.py --workdir=runs/mnist_fa_usf_sn
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_sn')
