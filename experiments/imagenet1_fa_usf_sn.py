"""ImageNet, AlexNet without batch norm, uSF with the SN scale: B = sign(W)·‖W‖/√n.

    python -m fajax.main --config=experiments/imagenet1_fa_usf_sn.py --workdir=runs/imagenet1_fa_usf_sn
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_sn')
