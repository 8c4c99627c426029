"""ImageNet, ResNet-18, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    fajax train --config=imagenet2_fa_usf_sn --workdir=runs/imagenet2_fa_usf_sn
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa_usf_sn')
