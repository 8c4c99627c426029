"""LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, every layer a feedback layer."""

import jax
from flax import nnx

from fajax.direct import DirectFeedback
from fajax.layers import FeedbackConv, FeedbackDense, default_kernel_init
from fajax.models.common import max_pool, relu_then_pool


class LeNet5(nnx.Module):
  """conv 6·5×5 → pool → conv 16·5×5 → pool → conv 120·5×5 → FC 84 → FC classes, on 32×32."""


  def __init__(
      self,
      num_classes: int = 10,
      in_channels: int = 1,
      *,
      kernel_init=default_kernel_init,
      error_after_pooling: bool = False,
      width: float = 1.0,
      rngs: nnx.Rngs,
  ):
    """`width` multiplies every hidden layer's channels or units (rounded, at least 1)."""
    self.error_after_pooling = error_after_pooling  # see common.relu_then_pool
    init = dict(kernel_init=kernel_init, rngs=rngs)
    c1, c2, c3, units = (max(1, round(n * width)) for n in (6, 16, 120, 84))
    self.conv1 = FeedbackConv(in_channels, c1, (5, 5), padding='VALID', **init)
    self.conv2 = FeedbackConv(c1, c2, (5, 5), padding='VALID', **init)
    self.conv3 = FeedbackConv(c2, c3, (5, 5), padding='VALID', **init)
    self.fc1 = FeedbackDense(c3, units, **init)
    self.fc2 = FeedbackDense(units, num_classes, **init)
    self.direct = DirectFeedback()

  def __call__(self, x: jax.Array) -> jax.Array:
    path = self.direct.path(x.shape[0])
    pool = lambda h: max_pool(h, 2, 2)
    x = relu_then_pool(path, 'conv1', self.conv1(x), pool, self.error_after_pooling)
    x = relu_then_pool(path, 'conv2', self.conv2(x), pool, self.error_after_pooling)
    x = path.activate('conv3', self.conv3(x), nnx.relu)
    x = path.activate('fc1', self.fc1(x.reshape(x.shape[0], -1)), nnx.relu)
    return path.finish(self.fc2(x))
