"""ImageNet, AlexNet without batch norm, exact backpropagation (B = W).

    python -m fajax.main --config=experiments/imagenet1_bp.py --workdir=runs/imagenet1_bp
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'bp')
