"""ImageNet, ResNet-18, exact backpropagation (B = W).

    python -m fajax.main --config=experiments/imagenet2_bp.py --workdir=runs/imagenet2_bp
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'bp')
