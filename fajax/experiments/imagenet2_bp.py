"""ImageNet, ResNet-18, exact backpropagation (B = W).

    fajax train --config=imagenet2_bp --workdir=runs/imagenet2_bp
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'bp')
