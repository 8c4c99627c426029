"""ImageNet, AlexNet without batch norm, uSF Init. with E/I: no forward weight ever changes sign.

    python -m fajax.main --config=experiments/imagenet1_fa_usf_init_ei.py --workdir=runs/imagenet1_fa_usf_init_ei
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa_usf_init_ei')
