"""ImageNet, AlexNet without batch norm, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    fajax train --config=imagenet1_bp_alignment --workdir=runs/imagenet1_bp_alignment
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp_alignment')
