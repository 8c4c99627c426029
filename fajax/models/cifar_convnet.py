"""The CIFAR-10 conv net of the DFA paper (Nøkland 2016), batch norm switchable.

conv 96, 128, 256 at 5×5, each → ReLU → 3×3/2 max-pool; FC 2048, 2048, classes.
"""

import jax
from flax import nnx

from fajax.direct import DirectFeedback
from fajax.layers import FeedbackDense, default_kernel_init
from fajax.models.common import ConvBN, max_pool, relu_then_pool


class CifarConvNet(nnx.Module):

  def __init__(self, num_classes: int = 10, *, batch_norm: bool = False,
               kernel_init=default_kernel_init, error_after_pooling: bool = False,
               rngs: nnx.Rngs):
    self.error_after_pooling = error_after_pooling  # see common.relu_then_pool
    conv = dict(batch_norm=batch_norm, kernel_init=kernel_init, rngs=rngs)
    self.conv1 = ConvBN(3, 96, 5, **conv)
    self.conv2 = ConvBN(96, 128, 5, **conv)
    self.conv3 = ConvBN(128, 256, 5, **conv)
    self.fc1 = FeedbackDense(4 * 4 * 256, 2048, kernel_init=kernel_init, rngs=rngs)
    self.fc2 = FeedbackDense(2048, 2048, kernel_init=kernel_init, rngs=rngs)
    self.fc3 = FeedbackDense(2048, num_classes, kernel_init=kernel_init, rngs=rngs)
    self.direct = DirectFeedback()

  def __call__(self, x: jax.Array) -> jax.Array:
    path = self.direct.path(x.shape[0])
    pool = lambda h: max_pool(h, 3, 2, 'SAME')
    for name in ('conv1', 'conv2', 'conv3'):
      x = relu_then_pool(path, name, getattr(self, name)(x), pool, self.error_after_pooling)
    x = x.reshape(x.shape[0], -1)
    x = path.activate('fc1', self.fc1(x), nnx.relu)
    x = path.activate('fc2', self.fc2(x), nnx.relu)
    return path.finish(self.fc3(x))
