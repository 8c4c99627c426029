"""CIFAR-10, ResNet-20, BP + Noise: B = W + σ·rms(W)·ξ, fresh noise every step (σ = 0.75).

    fajax train --config=cifar10_2_bp_noise --workdir=runs/cifar10_2_bp_noise
"""

from fajax.configs import cifar10_2


def get_config():
  return cifar10_2.get_config('bp_noise')
