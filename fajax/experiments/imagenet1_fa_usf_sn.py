"""ImageNet, AlexNet without batch norm, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    fajax train --config=imagenet1_fa_usf_sn --workdir=runs/imagenet1_fa_usf_sn
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_sn')
