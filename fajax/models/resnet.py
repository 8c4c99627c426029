"""ResNets with feedback convolutions: ResNet-20 for CIFAR and ResNet-18 for ImageNet.

He et al. 2016: ResNet-20 is the CIFAR variant (3 stages of 3 basic blocks, 16/32/64 filters,
parameter-free shortcuts that subsample and zero-pad, "option A"); ResNet-18 the ImageNet one
(7×7/2 stem, 3×3/2 max pool, 4 stages of 2 basic blocks, 64–512 filters, 1×1 projection
shortcuts). Every conv and the classifier are feedback layers; batch norm keeps its exact
backward. Residual additions and ReLUs are marked as DFA taps like every hidden nonlinearity.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from fajax.direct import DirectFeedback
from fajax.layers import FeedbackDense, default_kernel_init
from fajax.models.common import ConvBN, max_pool


class BasicBlock(nnx.Module):
  def __init__(self, name, in_features, out_features, strides, shortcut, *, kernel_init, rngs):
    conv = dict(batch_norm=True, kernel_init=kernel_init, rngs=rngs)
    self.name = name
    self.conv1 = ConvBN(in_features, out_features, 3, strides=strides, **conv)
    self.conv2 = ConvBN(out_features, out_features, 3, **conv)
    self.shortcut = shortcut
    self.strides = strides
    self.pad_channels = out_features - in_features
    self.projection = (
        ConvBN(in_features, out_features, 1, strides=strides, **conv)
        if shortcut == 'projection' and (strides != 1 or in_features != out_features) else None
    )

  def residual(self, x):
    if self.projection is not None:
      return self.projection(x)
    if self.strides == 1 and self.pad_channels == 0:
      return x
    x = x[:, :: self.strides, :: self.strides, :]
    half = self.pad_channels // 2
    return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (half, self.pad_channels - half)))

  def __call__(self, x, path):
    y = path.activate(f'{self.name}_a', self.conv1(x), nnx.relu)
    return path.activate(f'{self.name}_b', self.conv2(y) + self.residual(x), nnx.relu)


class ResNet(nnx.Module):
  def __init__(self, num_classes, *, stage_sizes, widths, stem, shortcut, in_channels=3,
               kernel_init=default_kernel_init, rngs: nnx.Rngs):
    self.stem_kind = stem
    conv = dict(batch_norm=True, kernel_init=kernel_init, rngs=rngs)
    if stem == 'imagenet':
      self.stem = ConvBN(in_channels, widths[0], 7, strides=2, **conv)
    else:
      self.stem = ConvBN(in_channels, widths[0], 3, **conv)
    # Blocks are named attributes, so every layer has a readable, stable name.
    names = []
    in_features = widths[0]
    for stage, (num_blocks, width) in enumerate(zip(stage_sizes, widths)):
      for index in range(num_blocks):
        name = f'stage{stage + 1}_block{index + 1}'
        strides = 2 if stage > 0 and index == 0 else 1
        setattr(self, name, BasicBlock(name, in_features, width, strides, shortcut,
                                       kernel_init=kernel_init, rngs=rngs))
        names.append(name)
        in_features = width
    self.block_names = tuple(names)
    self.head = FeedbackDense(in_features, num_classes, kernel_init=kernel_init, rngs=rngs)
    self.direct = DirectFeedback()

  def __call__(self, x: jax.Array) -> jax.Array:
    path = self.direct.path(x.shape[0])
    x = path.activate('stem', self.stem(x), nnx.relu)
    if self.stem_kind == 'imagenet':
      x = max_pool(x, 3, 2, 'SAME')
    for name in self.block_names:
      x = getattr(self, name)(x, path)
    return path.finish(self.head(jnp.mean(x, axis=(1, 2))))


def ResNet20(num_classes: int = 10, *, kernel_init=default_kernel_init, rngs: nnx.Rngs):
  return ResNet(num_classes, stage_sizes=(3, 3, 3), widths=(16, 32, 64), stem='cifar',
                shortcut='zero_pad', kernel_init=kernel_init, rngs=rngs)


def ResNet18(num_classes: int = 1000, *, kernel_init=default_kernel_init, rngs: nnx.Rngs):
  return ResNet(num_classes, stage_sizes=(2, 2, 2, 2), widths=(64, 128, 256, 512),
                stem='imagenet', shortcut='projection', kernel_init=kernel_init, rngs=rngs)
