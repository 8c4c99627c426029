"""ImageNet, AlexNet without batch norm, uSF with Const. and E/I.

    python -m fajax.main --config=experiments/imagenet1_fa_usf_const_ei.py --workdir=runs/imagenet1_fa_usf_const_ei
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_const_ei')
