"""ImageNet, AlexNet without batch norm, exact backpropagation (B = W).

    fajax train --config=imagenet1_bp --workdir=runs/imagenet1_bp
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp')
