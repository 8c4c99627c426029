"""ImageNet, ResNet-18, feedback alignment: fixed random B from W's initializer.

    fajax train --config=imagenet2_fa --workdir=runs/imagenet2_fa
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet2', 'fa')
