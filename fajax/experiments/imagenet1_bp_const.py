"""ImageNet, AlexNet without batch norm, BP with Const.: each W kept at its initial norm.

    fajax train --config=imagenet1_bp_const --workdir=runs/imagenet1_bp_const
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp_const')
