"""ImageNet, ResNet-18, feedback alignment: fixed random B from W's initializer.

    python -m fajax.main --config=experiments/imagenet2_fa.py --workdir=runs/imagenet2_fa
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa')
