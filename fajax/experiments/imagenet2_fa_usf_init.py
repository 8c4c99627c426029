"""ImageNet, ResNet-18, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    fajax train --config=imagenet2_fa_usf_init --workdir=runs/imagenet2_fa_usf_init
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa_usf_init')
