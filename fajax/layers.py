"""Flax NNX layers whose backward pass routes the input cotangent through feedback weights.

`FeedbackDense` and `FeedbackConv` take `nnx.Linear`'s and `nnx.Conv`'s constructor arguments,
with the same defaults, and compute the same forward pass (`fajax.general_layers` does the same
for `nnx.LinearGeneral` and `nnx.Einsum`; `fajax.to_feedback` converts a whole model). Each
holds its forward weights W (`kernel`) and `bias` as `nnx.Param`, and its feedback weights B as
a `Feedback` variable. `Feedback` is not a `Param`, so an optimizer built over the model's
`nnx.Param` state never sees B: no gradient step, momentum or weight decay touches it. Only a
feedback rule (`fajax.rules`) changes B.

B starts as an independent draw from the kernel's own initializer, with a key of
`rngs.feedback()` (the FA choice); a rule's first update replaces it where the rule defines B
otherwise (B = W for BP, sign(W)·c for uSF).
"""

import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import jax
import jax.numpy as jnp
from flax import nnx
from flax.nnx.nn import dtypes
from flax.nnx.nn import linear as nnx_linear
from jax import lax

from fajax import kernel as kernel_lib

KERNEL_INITIALIZERS = {
    # U(-1/√fan_in, 1/√fan_in): PyTorch's default for conv and linear layers, the start of the
    # PyTorch feedback-alignment tools. With it FA trains stably on LeNet-5 (BUILD_NOTES.md).
    'fan_in_uniform': nnx.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform'),
    'he_normal': nnx.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal'),
    'lecun_normal': nnx.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'),
}
# The kernel initializer of fajax's models (and `config.kernel_init`'s default). The layers
# themselves default to nnx's, as drop-ins for nnx's layers.
default_kernel_init = KERNEL_INITIALIZERS['fan_in_uniform']
NO_METADATA: Mapping = MappingProxyType({})  # nnx's default kernel_metadata and bias_metadata


class Feedback(nnx.Variable):
  """Feedback weights B of a layer: the matrix the backward pass uses in place of W."""


def layer_name(path: Sequence) -> str:
  """The name by which train states, rules, diagnostics and configs know the layer at an NNX
  path: its keys joined by '/', the indices of `nnx.List` and `nnx.Sequential` entries in
  decimal (('blocks', 0, 'attn', 'query') → 'blocks/0/attn/query')."""
  return '/'.join(map(str, path))


def require_default(name: str, value, *defaults) -> None:
  """Raises ValueError for an nnx argument that changes the op a feedback layer transposes."""
  if not any(value is default for default in defaults):
    raise ValueError(
        f'{name}={value!r} cannot be honoured by a feedback layer (its backward pass transposes '
        f'its own op, with B in place of W); leave {name} at its default')


def init_weights(layer: nnx.Module, kernel_shape: Sequence[int],
                 bias_shape: Sequence[int] | None, *, kernel_init, bias_init, param_dtype,
                 rngs: nnx.Rngs, kernel_metadata: Mapping, bias_metadata: Mapping) -> None:
  """Gives `layer` its `kernel` W, `feedback` B and `bias` (None when `bias_shape` is None),
  and no `input_tap` yet (`tapped_input`)."""
  layer.input_tap = nnx.data(None)
  kernel_key = rngs.params()
  layer.kernel = nnx.Param(kernel_init(kernel_key, kernel_shape, param_dtype), **kernel_metadata)
  layer.feedback = Feedback(kernel_init(rngs.feedback(), kernel_shape, param_dtype),
                            **kernel_metadata)
  # The bias's key comes from the kernel's, so that each layer takes one key of the params
  # stream: the built-in models' weights, and the losses recorded for them, depend on that.
  layer.bias = nnx.data(None) if bias_shape is None else nnx.Param(
      bias_init(jax.random.fold_in(kernel_key, 1), bias_shape, param_dtype), **bias_metadata)


def tapped_input(layer: nnx.Module, inputs: jax.Array) -> jax.Array:
  """`inputs` through the layer's input tap: where DFA's and DenseFA's error enters the layer
  in a model without hand-placed taps (`fajax.wiring`); as they are without a tap."""
  return inputs if layer.input_tap is None else layer.input_tap.enter(inputs)


def tapped_output(layer: nnx.Module, outputs: jax.Array) -> jax.Array:
  """`outputs` through the layer's input tap, which takes the error there for the model's
  last feedback layer (`fajax.wiring`); as they are without a tap."""
  return outputs if layer.input_tap is None else layer.input_tap.leave(outputs)


class FeedbackDense(nnx.Module):
  """`nnx.Linear`, y = x W + b over x's last axis, with feedback weights B in the backward pass.

  The arguments, of the constructor and of a call, are `nnx.Linear`'s, with its defaults;
  `dot_general` must stay `lax.dot_general` and `out_sharding` None.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      *,
      use_bias: bool = True,
      dtype=None,
      param_dtype=jnp.float32,
      precision=None,
      kernel_init=nnx_linear.default_kernel_init,
      bias_init=nnx_linear.default_bias_init,
      dot_general=lax.dot_general,
      promote_dtype=dtypes.promote_dtype,
      preferred_element_type=None,
      rngs: nnx.Rngs,
      kernel_metadata: Mapping = NO_METADATA,
      bias_metadata: Mapping = NO_METADATA,
  ):
    require_default('dot_general', dot_general, lax.dot_general)
    init_weights(self, (in_features, out_features), (out_features,) if use_bias else None,
                 kernel_init=kernel_init, bias_init=bias_init, param_dtype=param_dtype,
                 rngs=rngs, kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
    self.in_features, self.out_features = in_features, out_features
    self.dtype, self.precision = dtype, precision
    self.promote_dtype, self.preferred_element_type = promote_dtype, preferred_element_type

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    require_default('out_sharding', out_sharding, None)
    inputs = tapped_input(self, inputs)
    bias = None if self.bias is None else self.bias[...]
    inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)
    op = functools.partial(kernel_lib.dense, precision=self.precision,
                           preferred_element_type=self.preferred_element_type)
    y = kernel_lib.feedback_op(op, inputs, kernel, self.feedback[...].astype(kernel.dtype))
    return tapped_output(self, y if bias is None else y + bias)


def _per_axis(value: int | Sequence[int] | None, rank: int) -> tuple[int, ...]:
  """An nnx stride or dilation (None for 1, one int for every axis, or one per axis)."""
  value = 1 if value is None else value
  return (value,) * rank if isinstance(value, int) else tuple(value)


class FeedbackConv(nnx.Module):
  """`nnx.Conv` with feedback weights B in the backward pass.

  1-, 2- or 3-D: inputs [*batch, *spatial, C] (one batch axis, several, or none), kernels
  [*window, C / feature_group_count, out_features]. The arguments are `nnx.Conv`'s, with its
  defaults: an int `kernel_size` is a 1-D window; padding 'SAME' unless given (a lax padding
  string, 'CIRCULAR', 'REFLECT', 'CAUSAL', an int, or one int or (low, high) pair per axis);
  strides and dilations one int for every axis or one per axis. `conv_general_dilated` must
  stay `lax.conv_general_dilated`, and a call's `out_sharding` None.
  """

  def __init__(
      self,
      in_features: int,
      out_features: int,
      kernel_size: int | Sequence[int],
      strides: int | Sequence[int] | None = 1,
      *,
      padding='SAME',
      input_dilation: int | Sequence[int] | None = 1,
      kernel_dilation: int | Sequence[int] | None = 1,
      feature_group_count: int = 1,
      use_bias: bool = True,
      mask: jax.Array | None = None,
      dtype=None,
      param_dtype=jnp.float32,
      precision=None,
      kernel_init=nnx_linear.default_kernel_init,
      bias_init=nnx_linear.default_bias_init,
      conv_general_dilated=lax.conv_general_dilated,
      promote_dtype=dtypes.promote_dtype,
      preferred_element_type=None,
      rngs: nnx.Rngs,
      kernel_metadata: Mapping = NO_METADATA,
      bias_metadata: Mapping = NO_METADATA,
  ):
    require_default('conv_general_dilated', conv_general_dilated, lax.conv_general_dilated)
    if in_features % feature_group_count:
      raise ValueError(
          f'in_features={in_features} is not divisible by '
          f'feature_group_count={feature_group_count}'
      )
    self.kernel_size = (kernel_size,) if isinstance(kernel_size, int) else tuple(kernel_size)
    rank = len(self.kernel_size)
    if padding == 'CAUSAL' and rank != 1:
      raise ValueError(f"padding='CAUSAL' is for 1-D convolutions, not {rank}-D ones")
    padding = nnx_linear.canonicalize_padding(padding, rank)
    self.padding = padding if isinstance(padding, str) else tuple(map(tuple, padding))
    init_weights(self, (*self.kernel_size, in_features // feature_group_count, out_features),
                 (out_features,) if use_bias else None, kernel_init=kernel_init,
                 bias_init=bias_init, param_dtype=param_dtype, rngs=rngs,
                 kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
    self.in_features, self.out_features = in_features, out_features
    self.strides = _per_axis(strides, rank)
    self.input_dilation = _per_axis(input_dilation, rank)
    self.kernel_dilation = _per_axis(kernel_dilation, rank)
    self.feature_group_count = feature_group_count
    self.mask = mask
    self.dtype, self.precision = dtype, precision
    self.promote_dtype, self.preferred_element_type = promote_dtype, preferred_element_type

  def _padded(self, x: jax.Array) -> tuple[jax.Array, str | tuple]:
    """x padded for the modes lax has not, and the padding left for the convolution."""
    if self.padding in ('CIRCULAR', 'REFLECT'):
      # The dilated window's reach, split as 'SAME' splits it (the extra element after).
      reach = [(k - 1) * d for k, d in zip(self.kernel_size, self.kernel_dilation)]
      pads = [(0, 0), *((r // 2, r - r // 2) for r in reach), (0, 0)]
      mode = 'wrap' if self.padding == 'CIRCULAR' else 'reflect'
      return jnp.pad(x, pads, mode=mode), 'VALID'
    if self.padding == 'CAUSAL':  # each output sees only inputs at or before its position
      past = (self.kernel_size[0] - 1) * self.kernel_dilation[0]
      return jnp.pad(x, [(0, 0), (past, 0), (0, 0)]), 'VALID'
    return x, self.padding

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    require_default('out_sharding', out_sharding, None)
    inputs = tapped_input(self, inputs)
    kernel, feedback = self.kernel[...], self.feedback[...]
    if self.mask is not None:
      # The masked W is the layer's weight, so B is masked alike: B = W is then backprop.
      kernel, feedback = kernel * self.mask, feedback * self.mask
    bias = None if self.bias is None else self.bias[...]
    inputs, kernel, bias = self.promote_dtype((inputs, kernel, bias), dtype=self.dtype)
    batch_shape = inputs.shape[:inputs.ndim - len(self.kernel_size) - 1]
    x, padding = self._padded(inputs.reshape(-1, *inputs.shape[len(batch_shape):]))
    op = functools.partial(
        kernel_lib.conv,
        strides=self.strides,
        padding=padding,
        lhs_dilation=self.input_dilation,
        rhs_dilation=self.kernel_dilation,
        feature_group_count=self.feature_group_count,
        precision=self.precision,
        preferred_element_type=self.preferred_element_type,
    )
    y = kernel_lib.feedback_op(op, x, kernel, feedback.astype(kernel.dtype),
                               functools.partial(op, forward_only=True),
                               functools.partial(op, input_gradient_only=True))
    if bias is not None:
      y = y + bias
    return tapped_output(self, y.reshape(*batch_shape, *y.shape[1:]))
