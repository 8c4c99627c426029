"""ImageNet, ResNet-18, uSF Init. with E/I: no forward weight ever changes sign.

    fajax train --config=imagenet2_fa_usf_init_ei --workdir=runs/imagenet2_fa_usf_init_ei
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa_usf_init_ei')
