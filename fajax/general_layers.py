"""Feedback versions of `nnx.LinearGeneral` and `nnx.Einsum`, the layers attention is made of.

Like `fajax.layers`, each takes its nnx counterpart's constructor arguments with the same
defaults, computes the same forward pass, and routes the input cotangent through its feedback
weights B (`kernel.feedback_op` transposes any contraction linear in the input and in W).
"""

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import opt_einsum
from flax import nnx
from flax.core import FrozenDict
from flax.nnx import variablelib
from flax.nnx.nn import dtypes
from flax.nnx.nn import linear as nnx_linear
from jax import lax

from fajax import kernel as kernel_lib
from fajax.layers import NO_METADATA, init_weights, require_default, tapped_input, tapped_output


def _drawn_as(init, flat_shape: tuple[int, ...]):
  """`init`, drawing a `flat_shape` array and reshaping it to the shape asked for."""

  def reshaped(key, shape, dtype):
    value = init(key, flat_shape, dtype)
    if isinstance(value, variablelib.VariableMetadata):  # e.g. nnx.with_partitioning
      value.raw_value = value.raw_value.reshape(shape)
      return value
    return value.reshape(shape)

  return reshaped


def _as_tuple(value: int | Sequence[int]) -> tuple[int, ...]:
  return (value,) if isinstance(value, int) else tuple(value)


def _sorted_axes(axes: Sequence[int], ndim: int) -> tuple[int, ...]:
  return tuple(sorted(axis % ndim for axis in axes))


class FeedbackLinearGeneral(nnx.Module):
  """`nnx.LinearGeneral`, a contraction over any input axes, with feedback weights B.

  The arguments, of the constructor and of a call, are `nnx.LinearGeneral`'s, with its
  defaults; `dot_general` and `dot_general_cls` must stay None (`lax.dot_general`), and
  `out_sharding` None.
  """

  def __init__(
      self,
      in_features: int | Sequence[int],
      out_features: int | Sequence[int],
      *,
      axis: int | Sequence[int] = -1,
      batch_axis: Mapping[int, int] = FrozenDict({}),
      use_bias: bool = True,
      dtype=None,
      param_dtype=jnp.float32,
      kernel_init=nnx_linear.default_kernel_init,
      bias_init=nnx_linear.default_bias_init,
      precision=None,
      promote_dtype=dtypes.promote_dtype,
      dot_general=None,
      dot_general_cls=None,
      preferred_element_type=None,
      rngs: nnx.Rngs,
      kernel_metadata: Mapping = NO_METADATA,
      bias_metadata: Mapping = NO_METADATA,
  ):
    require_default('dot_general', dot_general, None, lax.dot_general)
    require_default('dot_general_cls', dot_general_cls, None)
    self.in_features, self.out_features = _as_tuple(in_features), _as_tuple(out_features)
    self.axis = _as_tuple(axis)
    self.batch_axis = FrozenDict(batch_axis)
    if len(self.in_features) != len(self.axis):
      raise ValueError(f'in_features {self.in_features} and axis {self.axis} must have the '
                       'same length')
    if set(self.batch_axis) != set(range(len(self.batch_axis))):
      raise ValueError(f'batch_axis {tuple(self.batch_axis)} must be the leading axes, from 0')
    batch_shape = tuple(self.batch_axis.values())
    bias_shape = (*batch_shape, *self.out_features)
    # As nnx does: the kernel is drawn as a [fan_in, fan_out] matrix, so that fan-based
    # initializers see the layer's fans, then reshaped.
    flat_kernel = (math.prod(batch_shape) * math.prod(self.in_features),
                   math.prod(self.out_features))
    init_weights(self, (*batch_shape, *self.in_features, *self.out_features),
                 bias_shape if use_bias else None,
                 kernel_init=_drawn_as(kernel_init, flat_kernel),
                 bias_init=_drawn_as(bias_init, (math.prod(bias_shape),)),
                 param_dtype=param_dtype, rngs=rngs, kernel_metadata=kernel_metadata,
                 bias_metadata=bias_metadata)
    self.dtype, self.precision = dtype, precision
    self.promote_dtype, self.preferred_element_type = promote_dtype, preferred_element_type

  def __call__(self, inputs: jax.Array, out_sharding=None) -> jax.Array:
    require_default('out_sharding', out_sharding, None)
    inputs = tapped_input(self, inputs)
    axis = _sorted_axes(self.axis, inputs.ndim)
    batch_axis = _sorted_axes(tuple(self.batch_axis), inputs.ndim)
    num_batch = len(batch_axis)
    dimension_numbers = ((axis, tuple(range(num_batch, num_batch + len(axis)))),
                         (batch_axis, tuple(range(num_batch))))
    bias = None if self.bias is None else self.bias[...]
    inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)

    def op(x, w):
      return lax.dot_general(x, w, dimension_numbers, precision=self.precision,
                             preferred_element_type=self.preferred_element_type)

    y = kernel_lib.feedback_op(op, inputs, kernel, self.feedback[...].astype(kernel.dtype))
    if bias is not None:
      # The output's axes: the batch axes, the input's other free axes, then the features.
      free = [inputs.shape[a] if a in batch_axis else 1 for a in range(inputs.ndim)
              if a not in axis]
      y = y + bias.reshape(*free, *self.out_features)
    return tapped_output(self, y)


def _checked(einsum_str: str) -> str:
  einsum_str = einsum_str.replace(' ', '')
  if '->' not in einsum_str or einsum_str.count(',') != 1:
    raise ValueError(f'einsum_str {einsum_str!r} must be explicit ("->") with exactly two '
                     'operands, the input and the kernel')
  return einsum_str


def _bias_shape_in_output(einsum_str: str, inputs: jax.Array, kernel: jax.Array) -> list[int]:
  """The bias's shape against the output: the kernel's axes kept in the output, 1 elsewhere."""
  operands, output, _ = opt_einsum.parser.parse_einsum_input((einsum_str, inputs, kernel))
  kernel_axes = operands.split(',')[1]
  return [kernel.shape[kernel_axes.index(a)] if a in kernel_axes else 1 for a in output]


class FeedbackEinsum(nnx.Module):
  """`nnx.Einsum`, `einsum(einsum_str, x, W) + b`, with feedback weights B.

  The arguments, of the constructor and of a call (which may give its own `einsum_str`), are
  `nnx.Einsum`'s, with its defaults; `einsum_op` must stay `jnp.einsum` and `out_sharding`
  None.
  """

  def __init__(
      self,
      einsum_str: str,
      kernel_shape: Sequence[int],
      bias_shape: Sequence[int] | None = None,
      *,
      dtype=None,
      param_dtype=jnp.float32,
      precision=None,
      kernel_init=nnx_linear.default_kernel_init,
      bias_init=nnx_linear.default_bias_init,
      promote_dtype=dtypes.promote_dtype,
      einsum_op=jnp.einsum,
      preferred_element_type=None,
      rngs: nnx.Rngs,
      kernel_metadata: Mapping = NO_METADATA,
      bias_metadata: Mapping = NO_METADATA,
  ):
    require_default('einsum_op', einsum_op, jnp.einsum)
    self.einsum_str = _checked(einsum_str)
    self.kernel_shape = tuple(kernel_shape)
    self.bias_shape = None if bias_shape is None else tuple(bias_shape)
    init_weights(self, self.kernel_shape, self.bias_shape, kernel_init=kernel_init,
                 bias_init=bias_init, param_dtype=param_dtype, rngs=rngs,
                 kernel_metadata=kernel_metadata, bias_metadata=bias_metadata)
    self.dtype, self.precision = dtype, precision
    self.promote_dtype, self.preferred_element_type = promote_dtype, preferred_element_type

  def __call__(self, inputs: jax.Array, einsum_str: str | None = None,
               out_sharding=None) -> jax.Array:
    require_default('out_sharding', out_sharding, None)
    inputs = tapped_input(self, inputs)
    einsum_str = _checked(self.einsum_str if einsum_str is None else einsum_str)
    bias = None if self.bias is None else self.bias[...]
    inputs, kernel, bias = self.promote_dtype((inputs, self.kernel[...], bias), dtype=self.dtype)

    def op(x, w):
      return jnp.einsum(einsum_str, x, w, precision=self.precision,
                        preferred_element_type=self.preferred_element_type)

    y = kernel_lib.feedback_op(op, inputs, kernel, self.feedback[...].astype(kernel.dtype))
    if bias is not None:
      y = y + bias.reshape(_bias_shape_in_output(einsum_str, inputs, kernel))
    return tapped_output(self, y)
