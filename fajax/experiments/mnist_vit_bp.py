"""MNIST, the small vision transformer, exact backpropagation (B = W).

    fajax train --config=mnist_vit_bp --workdir=runs/mnist_vit_bp
"""

from fajax.configs import mnist_vit


def get_config():
  return mnist_vit.get_config('bp')
