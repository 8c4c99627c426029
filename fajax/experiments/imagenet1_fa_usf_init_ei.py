"""ImageNet, AlexNet without batch norm, uSF Init. with E/I: no forward weight ever changes sign.

    fajax train --config=imagenet1_fa_usf_init_ei --workdir=runs/imagenet1_fa_usf_init_ei
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_init_ei')
