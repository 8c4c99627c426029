"""ImageNet, AlexNet without batch norm, feedback alignment: fixed random B from W's initializer.

    python -m fajax.main --config=experiments/imagenet1_fa.py --workdir=runs/imagenet1_fa
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa')
