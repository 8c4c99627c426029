"""ImageNet, AlexNet without batch norm, feedback alignment: fixed random B from W's initializer.

    fajax train --config=imagenet1_fa --workdir=runs/imagenet1_fa
"""

from fajax.configs import imagenet


def get_config():
  return imagenet.get_config('imagenet1', 'fa')
