"""ImageNet, ResNet-18, BP + Noise: B = W + σ·rms(W)·ξ, fresh noise every step (σ = 0.75).

    fajax train --config=imagenet2_bp_noise --workdir=runs/imagenet2_bp_noise
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'bp_noise')
