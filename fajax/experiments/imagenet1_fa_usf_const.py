"""ImageNet, AlexNet without batch norm, uSF with Const.: each W kept at its initial norm.

    fajax train --config=imagenet1_fa_usf_const --workdir=runs/imagenet1_fa_usf_const
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_const')
