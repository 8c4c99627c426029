"""Flax NNX layers whose backward pass routes the input cotangent through feedback weights.

Each layer holds its forward weights W (`kernel`) and `bias` as `nnx.Param`, and its feedback
weights B as a `Feedback` variable. `Feedback` is not a `Param`, so an optimizer built over the
model's `nnx.Param` state never sees B: no gradient step, momentum or weight decay touches it.
Only a feedback rule (`fajax.rules`) changes B.

B starts as an independent draw from the kernel's own initializer (the FA choice); a rule's
first update replaces it where the rule defines B otherwise (B = W for BP, sign(W)·c for uSF).
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fajax import kernel as kernel_lib

KERNEL_INITIALIZERS = {
    # U(-1/√fan_in, 1/√fan_in): PyTorch's default for conv and linear layers, the start of the
    # PyTorch feedback-alignment tools. With it FA trains stably on LeNet-5 (BUILD_NOTES.md).
    'fan_in_uniform': nnx.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
    'he_normal': nnx.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal'),
    'lecun_normal': nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'),
}
default_kernel_init = KERNEL_INITIALIZERS['fan_in_uniform']


class Feedback(nnx.Variable):
  """Feedback weights B of a layer: the matrix the backward pass uses in place of W."""


class FeedbackDense(nnx.Module):
  """Dense layer `y = x W + b` with feedback weights B in the backward pass."""

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      use_bias: bool = True,
      kernel_init=default_kernel_init,
      rngs: nnx.Rngs,
  ):
    shape = (in_features, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
    self.feedback = Feedback(kernel_init(rngs.feedback(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None

  def __call__(self, x: jax.Array) -> jax.Array:
    y = kernel_lib.feedback_op(kernel_lib.dense, x, self.kernel[...], self.feedback[...])
    return y if self.bias is None else y + self.bias[...]


class FeedbackConv(nnx.Module):
  """2-D convolution (NHWC input, HWIO kernel) with feedback weights B in the backward pass."""

  def __init__(
      self,
      in_features: int,
      out_features: int,
      kernel_size: Sequence[int],
      *,
      strides: Sequence[int] = (1, 1),
      padding: str | Sequence[tuple[int, int]] = 'VALID',
      rhs_dilation: Sequence[int] = (1, 1),
      feature_group_count: int = 1,
      use_bias: bool = True,
      kernel_init=default_kernel_init,
      rngs: nnx.Rngs,
  ):
    if in_features % feature_group_count:
      raise ValueError(
          f'in_features={in_features} is not divisible by '
          f'feature_group_count={feature_group_count}'
      )
    shape = (*kernel_size, in_features // feature_group_count, out_features)
    self.kernel = nnx.Param(kernel_init(rngs.params(), shape))
    self.feedback = Feedback(kernel_init(rngs.feedback(), shape))
    self.bias = nnx.Param(jnp.zeros((out_features,))) if use_bias else None
    self.strides = tuple(strides)
    self.padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    self.rhs_dilation = tuple(rhs_dilation)
    self.feature_group_count = feature_group_count

  def __call__(self, x: jax.Array) -> jax.Array:
    op = functools.partial(
        kernel_lib.conv,
        strides=self.strides,
        padding=self.padding,
        rhs_dilation=self.rhs_dilation,
        feature_group_count=self.feature_group_count,
    )
    y = kernel_lib.feedback_op(op, x, self.kernel[...], self.feedback[...])
    return y if self.bias is None else y + self.bias[...]
