"""ImageNet, ResNet-18, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    python -m fajax.main --config=experiments/imagenet2_fa_usf_sn.py --workdir=runs/imagenet2_fa_usf_sn
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa_usf_sn')
