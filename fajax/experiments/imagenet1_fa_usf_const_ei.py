"""ImageNet, AlexNet without batch norm, uSF with Const. and E/I.

    fajax train --config=imagenet1_fa_usf_const_ei --workdir=runs/imagenet1_fa_usf_const_ei
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_const_ei')
