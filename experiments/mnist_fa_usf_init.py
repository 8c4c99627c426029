"""MNIST, LeNet-5, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    python -m fajax.main --config=experiments/mnist_fa_usf_init.py --workdir=runs/mnist_fa_usf_init
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('fa_usf_init')
