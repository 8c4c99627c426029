"""ImageNet, AlexNet without batch norm, BP with Const.: each W kept at its initial norm.

    python -m fajax.main --config=experiments/imagenet1_bp_const.py --workdir=runs/imagenet1_bp_const
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp_const')
