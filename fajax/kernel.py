"""The feedback kernel: one `custom_vjp` that swaps feedback weights B in for W.

Every feedback layer computes `y = op(x, W)` with `op` linear in `x` and in `W`. Exact
backprop propagates `dx = op_x^T(dy; W)`; a feedback rule propagates `dx = op_x^T(dy; B)`
instead, while `dW = op_W^T(dy; x)` stays the ordinary local weight gradient. Both transposes
come from `jax.linear_transpose` of the forward op, so one kernel serves dense layers,
convolutions of any dimension, stride, padding, dilation or feature grouping, and any
`dot_general` or einsum, and with B = W it returns exactly what `jax.grad` of the plain op
returns (up to float rounding where a layer gives the input gradient a faster route of the
same op, as `conv` does for LeNet-5's second layer at large batches).
"""

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Op = Callable[[jax.Array, jax.Array], jax.Array]


def dense(x: jax.Array, kernel: jax.Array, *, precision=None,
          preferred_element_type=None) -> jax.Array:
  """`x @ kernel` over the last axis of x; kernel is [in_features, out_features]."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())), precision=precision,
                         preferred_element_type=preferred_element_type)


# XLA's CPU convolution is slow when each output sees few inputs (first layers: 1–3 input
# channels) and when the window covers most of the image (ResNet-18's last stages at small
# resolution: up to 100× slower); its transposes, the backward pass, are slower still. There,
# one matmul over the stacked shifted windows (im2col) is faster, forward and backward; so is a
# 1×1 convolution, a plain matmul. Elsewhere XLA's convolution wins (measurements:
# BUILD_NOTES.md, "Speed (issue 7)"). The stacked windows take kh·kw times the input's
# memory; above this size XLA's convolution is used regardless.
IM2COL_MAX_INPUT_FEATURES = 16
IM2COL_MAX_BYTES = 64 * 2**20
# A forward pass that is never differentiated (evaluation) needs no transposes, and then few
# input channels are no reason for im2col when the window is larger than this: XLA's
# convolution is faster for LeNet-5's conv2 (1.7–3× at batches 32–1000), its conv1 at the
# evaluation's batch of 1000 (1.2×) and CIFAR's 5×5 first layer (1.6×), and slower for a 3×3
# first layer of 3 channels (1.3×) (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
FORWARD_ONLY_IM2COL_MAX_WINDOW = 9
# A first layer of one input channel and few outputs (LeNet-5's 1→6) is a poor matmul as
# im2col (inner size kh·kw, outer size C_out) and a slow XLA convolution. Along the width it
# is one matmul with a banded matrix: each row of kh input rows (kh·W values) against a matrix
# whose column (w, c) holds the kernel's row weights at offsets w..w+kw-1. It does W/kw times
# the multiplications, in a matmul shape that runs near peak: LeNet-5's conv1 forward and
# weight gradient 11.2 → 6.8 ms at batch 128 (im2col), its forward at the evaluation's batch of
# 1000 60 → 25 ms (XLA's). Measured faster for 4–8 outputs on images 28–64 wide, slower for 16
# outputs or 3 input channels (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
BANDED_MAX_OUTPUT_FEATURES = 8
BANDED_MAX_INPUT_WIDTH = 64
# The input gradient of an im2col convolution is a matmul of inner size C_out, then kh·kw
# shifted sums; where the window spans a third of the image or more and C_out is small, the
# banded route's transpose (one matmul of inner size W_out·C_out) is faster at large batches:
# LeNet-5's conv2 (14 wide, 5×5, 6 → 16) 3.68 → 2.98 ms alone at batch 128, its steps at batch
# 128 1–1.8 ms faster, but 0.95 → 1.29 ms at batch 32, and 2.4× slower on a 16-wide 3×3 layer
# of 32 outputs (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
BANDED_GRADIENT_MAX_OUTPUT_FEATURES = 16
BANDED_GRADIENT_MIN_BATCH = 64
BANDED_GRADIENT_MAX_WINDOWS_ACROSS = 3


def _im2col_is_faster(x: jax.Array, kernel: jax.Array, outputs: int, forward_only: bool) -> bool:
  window_h, window_w, in_features, _ = kernel.shape
  window = window_h * window_w
  patches_bytes = outputs * window * in_features * x.dtype.itemsize
  few_inputs = in_features < IM2COL_MAX_INPUT_FEATURES and not (
      forward_only and window > FORWARD_ONLY_IM2COL_MAX_WINDOW)
  return patches_bytes <= IM2COL_MAX_BYTES and (
      window == 1 or few_inputs or x.shape[1] * x.shape[2] <= 2 * window)


def window_slices(
    x: jax.Array,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    dilation: Sequence[int] = (1, 1),
    pad_value: float = 0.0,
) -> list[jax.Array]:
  """For each offset of a 2-D window (row-major), the NHWC input's values under it.

  Element [n, i, j, c] of the k-th slice is the input at window offset k of output (i, j),
  with the input padded by `padding` (a lax padding string or explicit pairs) with `pad_value`.
  """
  window_h, window_w = window
  dilation_h, dilation_w = dilation
  if isinstance(padding, str):
    dilated = ((window_h - 1) * dilation_h + 1, (window_w - 1) * dilation_w + 1)
    padding = lax.padtype_to_pads(x.shape[1:3], dilated, tuple(strides), padding)
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=pad_value)
  n, height, width, channels = x.shape
  stride_h, stride_w = strides
  out_h = (height - (window_h - 1) * dilation_h - 1) // stride_h + 1
  out_w = (width - (window_w - 1) * dilation_w - 1) // stride_w + 1
  return [
      lax.slice(
          x,
          (0, i * dilation_h, j * dilation_w, 0),
          (n, i * dilation_h + (out_h - 1) * stride_h + 1,
           j * dilation_w + (out_w - 1) * stride_w + 1, channels),
          (1, stride_h, stride_w, 1),
      )
      for i in range(window_h)
      for j in range(window_w)
  ]


def _im2col_conv(x, kernel, strides, padding, rhs_dilation, precision, preferred_element_type):
  window_h, window_w, in_features, out_features = kernel.shape
  slices = window_slices(x, (window_h, window_w), strides, padding, rhs_dilation)
  patches = slices[0] if len(slices) == 1 else jnp.concatenate(slices, axis=-1)
  return dense(patches, kernel.reshape(window_h * window_w * in_features, out_features),
               precision=precision, preferred_element_type=preferred_element_type)


# The banded route is for undilated stride-1 convolutions only, which `conv` checks first.
def _banded_is_faster(x: jax.Array, kernel: jax.Array, padding_w: tuple[int, int]) -> bool:
  _, _, in_features, out_features = kernel.shape
  return (in_features == 1 and out_features <= BANDED_MAX_OUTPUT_FEATURES
          and x.shape[2] + sum(padding_w) <= BANDED_MAX_INPUT_WIDTH)


def _banded_input_gradient_is_faster(x: jax.Array, kernel: jax.Array,
                                     padding_w: tuple[int, int]) -> bool:
  window_w, out_features = kernel.shape[1], kernel.shape[3]
  return (out_features <= BANDED_GRADIENT_MAX_OUTPUT_FEATURES
          and x.shape[0] >= BANDED_GRADIENT_MIN_BATCH
          and x.shape[2] + sum(padding_w) <= BANDED_GRADIENT_MAX_WINDOWS_ACROSS * window_w)


def _banded_conv(x, kernel, padding, precision, preferred_element_type):
  """A stride-1 2-D convolution as one matmul of stacked input rows with a banded matrix."""
  window_h, window_w, in_features, out_features = kernel.shape
  x = jnp.pad(x, ((0, 0), *padding, (0, 0)))
  n, height, width, _ = x.shape
  out_h, out_w = height - window_h + 1, width - window_w + 1
  # band[i, v, c, w, o] = kernel[i, v - w, c, o] where 0 <= v - w < kw, else 0: a product with
  # a 0/1 matrix, so it is exact and transposes (the weight gradient) as plainly.
  shifts = np.zeros((window_w, width, out_w), kernel.dtype)
  for offset in range(window_w):
    shifts[offset, np.arange(out_w) + offset, np.arange(out_w)] = 1
  band = jnp.einsum('jvw,ijco->ivcwo', shifts, kernel, precision=lax.Precision.HIGHEST)
  rows = jnp.concatenate(
      [x[:, i:i + out_h].reshape(n, out_h, width * in_features) for i in range(window_h)],
      axis=-1)
  y = dense(rows, band.reshape(window_h * width * in_features, out_w * out_features),
            precision=precision, preferred_element_type=preferred_element_type)
  return y.reshape(n, out_h, out_w, out_features)


def _channels_last(spatial_dims: int) -> lax.ConvDimensionNumbers:
  """Inputs and outputs [N, *spatial, C], kernels [*window, C_in, C_out] (NHWC/HWIO in 2-D)."""
  features = (0, spatial_dims + 1, *range(1, spatial_dims + 1))
  return lax.ConvDimensionNumbers(
      lhs_spec=features, rhs_spec=(spatial_dims + 1, spatial_dims, *range(spatial_dims)),
      out_spec=features)


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: Sequence[int] | None = None,
    padding: str | Sequence[tuple[int, int]] = 'VALID',
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    feature_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    forward_only: bool = False,
    input_gradient_only: bool = False,
) -> jax.Array:
  """Convolution over 1, 2 or 3 spatial axes: x [N, *spatial, C], kernel [*window, C/groups, O].

  `strides` and the dilations default to 1 on every spatial axis; their meaning is
  `lax.conv_general_dilated`'s. Where JAX's default backend is the CPU, the 2-D convolutions
  where XLA is slow run as one matmul (im2col, or for one input channel and few outputs a
  banded matrix); elsewhere, and for grouped or input-dilated convolutions, as XLA's
  convolution. All give the same values up to float rounding.
  `forward_only`: the caller never differentiates this call (an evaluation), so the route is
  chosen for the forward pass alone. `input_gradient_only`: the caller only transposes this
  call with respect to x (the feedback kernel's input gradient), so the route is chosen for
  that transpose.
  """
  ones = (1,) * (kernel.ndim - 2)
  strides = ones if strides is None else tuple(strides)
  lhs_dilation = ones if lhs_dilation is None else tuple(lhs_dilation)
  rhs_dilation = ones if rhs_dilation is None else tuple(rhs_dilation)
  padding = padding if isinstance(padding, str) else tuple((low, high) for low, high in padding)

  def xla_conv(x, kernel):
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=_channels_last(kernel.ndim - 2),
        feature_group_count=feature_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
    )

  # The route is chosen as the op is traced, for JAX's default backend: under
  # `lax.platform_dependent` both routes were traced and differentiated, a third of a LeNet-5
  # step's tracing (BUILD_NOTES.md, "Tests and CI time").
  if (jax.default_backend() != 'cpu' or kernel.ndim != 4 or feature_group_count != 1
      or lhs_dilation != ones):
    return xla_conv(x, kernel)
  dilated_window = tuple((k - 1) * d + 1 for k, d in zip(kernel.shape[:2], rhs_dilation))
  pads = (lax.padtype_to_pads(x.shape[1:3], dilated_window, strides, padding)
          if isinstance(padding, str) else padding)
  stride_one = strides == (1, 1) and rhs_dilation == (1, 1)  # what the banded route needs
  if stride_one and _banded_is_faster(x, kernel, pads[1]):
    return _banded_conv(x, kernel, pads, precision, preferred_element_type)
  outputs = math.prod(jax.eval_shape(xla_conv, x, kernel).shape[:3])
  if not _im2col_is_faster(x, kernel, outputs, forward_only):
    return xla_conv(x, kernel)
  if stride_one and input_gradient_only and _banded_input_gradient_is_faster(x, kernel, pads[1]):
    return _banded_conv(x, kernel, pads, precision, preferred_element_type)
  return _im2col_conv(x, kernel, strides, padding, rhs_dilation, precision, preferred_element_type)


def feedback_op(op: Op, x: jax.Array, kernel: jax.Array, feedback: jax.Array,
                forward_only_op: Op | None = None,
                input_gradient_op: Op | None = None) -> jax.Array:
  """`op(x, kernel)` whose input cotangent is computed with `feedback` in place of `kernel`.

  `feedback` receives no gradient: it is changed only by a feedback rule. `forward_only_op`:
  the same op by a route that is faster where it is not differentiated (an evaluation);
  `input_gradient_op`: by a route whose transpose in x is faster (the input gradient). Both
  default to `op`.
  """
  return _feedback_op(op, forward_only_op or op, input_gradient_op or op, x, kernel, feedback)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _feedback_op(op, forward_only_op, input_gradient_op, x, kernel, feedback):
  # A custom_vjp's own body runs only where it is not differentiated; training runs the
  # forward rule below.
  del op, input_gradient_op, feedback
  return forward_only_op(x, kernel)


def _feedback_op_fwd(op, forward_only_op, input_gradient_op, x, kernel, feedback):
  del forward_only_op, input_gradient_op
  # The op is linear in both arguments, so the backward pass needs x and B, never W.
  return op(x, kernel), (x, feedback)


def _feedback_op_bwd(op, forward_only_op, input_gradient_op, residuals, dy):
  del forward_only_op
  x, feedback = residuals
  (dx,) = jax.linear_transpose(lambda x_: input_gradient_op(x_, feedback), x)(dy)
  (dkernel,) = jax.linear_transpose(lambda k_: op(x, k_), feedback)(dy)
  return dx, dkernel, None


_feedback_op.defvjp(_feedback_op_fwd, _feedback_op_bwd)
