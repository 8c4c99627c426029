"""ImageNet, AlexNet without batch norm, uSF with the Init. scale: B = sign(W)·‖W_0‖/√n.

    fajax train --config=imagenet1_fa_usf_init --workdir=runs/imagenet1_fa_usf_init
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_init')
