"""CIFAR-10, the DFA paper's conv net, BP + Noise: B = W + σ·rms(W)·ξ, fresh noise every step (σ = 0.75).

    fajax train --config=cifar10_1_bp_noise --workdir=runs/cifar10_1_bp_noise
"""

from fajax.configs import cifar10_1


def get_config():
  return cifar10_1.get_config('bp_noise')
