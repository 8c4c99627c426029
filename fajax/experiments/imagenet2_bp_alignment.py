"""ImageNet, ResNet-18, BP + Alignment: B = W·‖W_0‖/‖W‖ (exact direction, initial norm).

    fajax train --config=imagenet2_bp_alignment --workdir=runs/imagenet2_bp_alignment
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'bp_alignment')
