"""ImageNet, AlexNet without batch norm, uSF with Const.: each W kept at its initial norm.

    python -m fajax.main --config=experiments/imagenet1_fa_usf_const.py --workdir=runs/imagenet1_fa_usf_const
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_const')
