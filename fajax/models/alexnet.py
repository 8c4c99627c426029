"""AlexNet (Krizhevsky et al. 2012, in torchvision's single-tower form), batch norm optional.

conv 64 11×11/4 → pool → conv 192 5×5 → pool → conv 384, 256, 256 3×3 → pool → 6×6 adaptive
average → dropout → FC 4096 → dropout → FC 4096 → FC classes. With `batch_norm`, every conv and
hidden FC is followed by batch norm (the AlexNet-BN of Xiao et al. 2018).
"""

import jax
from flax import nnx

from fajax.direct import DirectFeedback
from fajax.layers import FeedbackDense, default_kernel_init
from fajax.models.common import ConvBN, adaptive_avg_pool, max_pool, normalize, relu_then_pool

_CONVS = (  # name, out features, kernel, stride, max-pool after
    ('conv1', 64, 11, 4, True),
    ('conv2', 192, 5, 1, True),
    ('conv3', 384, 3, 1, False),
    ('conv4', 256, 3, 1, False),
    ('conv5', 256, 3, 1, True),
)


class AlexNet(nnx.Module):
  def __init__(self, num_classes: int = 1000, *, batch_norm: bool = False,
               dropout_rate: float = 0.5,
               kernel_init=default_kernel_init, error_after_pooling: bool = False,
               rngs: nnx.Rngs):
    self.error_after_pooling = error_after_pooling  # see common.relu_then_pool
    in_features = 3
    for name, features, kernel, stride, _ in _CONVS:
      padding = ((2, 2), (2, 2)) if kernel in (11, 5) else ((1, 1), (1, 1))
      setattr(self, name, ConvBN(in_features, features, kernel, strides=stride, padding=padding,
                                 batch_norm=batch_norm, kernel_init=kernel_init, rngs=rngs))
      in_features = features
    dense = dict(kernel_init=kernel_init, rngs=rngs)
    self.fc1 = FeedbackDense(6 * 6 * 256, 4096, use_bias=not batch_norm, **dense)
    self.fc2 = FeedbackDense(4096, 4096, use_bias=not batch_norm, **dense)
    self.fc3 = FeedbackDense(4096, num_classes, **dense)
    bn = lambda: nnx.BatchNorm(4096, momentum=0.9, rngs=rngs) if batch_norm else None
    self.fc1_norm, self.fc2_norm = bn(), bn()
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
    self.direct = DirectFeedback()

  def __call__(self, x: jax.Array) -> jax.Array:
    path = self.direct.path(x.shape[0])
    for name, _, _, _, pooled in _CONVS:
      pool = (lambda h: max_pool(h, 3, 2)) if pooled else (lambda h: h)
      x = relu_then_pool(path, name, getattr(self, name)(x), pool, self.error_after_pooling)
    x = adaptive_avg_pool(x, 6).reshape(x.shape[0], -1)
    for name, norm in (('fc1', self.fc1_norm), ('fc2', self.fc2_norm)):
      x = getattr(self, name)(self.dropout(x))
      x = path.activate(name, normalize(norm, x), nnx.relu)
    return path.finish(self.fc3(x))
