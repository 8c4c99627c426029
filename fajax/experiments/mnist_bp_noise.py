"""MNIST, LeNet-5, BP + Noise: B = W + σ·rms(W)·ξ, fresh noise every step (σ = 0.75).

    fajax train --config=mnist_bp_noise --workdir=runs/mnist_bp_noise
"""

from fajax.configs import mnist


def get_config():
  return mnist.get_config('bp_noise')
