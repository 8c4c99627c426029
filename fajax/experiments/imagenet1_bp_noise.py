"""ImageNet, AlexNet without batch norm, BP + Noise: B = W + σ·rms(W)·ξ, fresh noise every step (σ = 0.75).

    fajax train --config=imagenet1_bp_noise --workdir=runs/imagenet1_bp_noise
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp_noise')
