"""Pieces the models share: pooling, and conv/dense blocks with optional batch norm."""

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from fajax import kernel
from fajax.layers import FeedbackConv


def max_pool(x: jax.Array, window: int, stride: int, padding: str = 'VALID') -> jax.Array:
  """Max over `window`×`window` windows (NHWC); the values of `nnx.max_pool`, and its gradients
  where the windows do not overlap.

  Written so that XLA's CPU backward pass is fast (BUILD_NOTES.md, "Speed (issue 7)"):
  non-overlapping windows as a reduction over a reshape, whose gradient goes to each window's
  first maximum as `nnx.max_pool`'s select-and-scatter sends it (`_tiled_max_pool`);
  overlapping ones over rows, then over columns, as the maximum of strided views, whose
  gradient is split between equal maxima. `nnx.max_pool`'s backward is 1.4–6× slower.
  """
  _, height, width, _ = x.shape
  if window == stride and padding == 'VALID' and height % window == width % window == 0:
    return _tiled_max_pool(x, window)
  return _max_of_views(x, window, stride, padding)


def _max_of_views(x, window, stride, padding):
  for shape, strides in (((window, 1), (stride, 1)), ((1, window), (1, stride))):
    views = kernel.window_slices(x, shape, strides, padding, pad_value=-jnp.inf)
    x = functools.reduce(jnp.maximum, views)
  return x


def _windows(x, window):
  n, height, width, channels = x.shape
  return x.reshape(n, height // window, window, width // window, window, channels)


# Non-overlapping windows, differentiated, as the reduction over a reshape; where nothing
# differentiates them (an evaluation: a custom_vjp's own body runs only there) as the maximum of
# strided views, the same values: after a bias and ReLU, XLA's CPU backend fuses the reduction
# with the matmul before it into one slow kernel (LeNet-5's conv1 block at the evaluation's
# batch of 1000: 46.8 ms, with strided views 31.3; BUILD_NOTES.md, "fajax against PyTorch on
# one CPU").
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tiled_max_pool(x, window):
  return _max_of_views(x, window, window, 'VALID')


def _tiled_max_pool_fwd(x, window):
  y = _windows(x, window).max((2, 4))
  return y, (x, y)


def _tiled_max_pool_bwd(window, residuals, dy):
  """dy to the first maximum of each window in row-major order, as `nnx.max_pool`'s
  select-and-scatter sends it; zero elsewhere. One elementwise pass per window position: the
  gradient of the reduction (split between equal maxima, whose counts it sums) took 3.2 ms at
  LeNet-5's conv1 at batch 128, this 0.8 (BUILD_NOTES.md, "fajax against PyTorch on one CPU")."""
  x, y = residuals
  windows = _windows(x, window)
  taken = jnp.zeros(y.shape, bool)
  rows = []
  for i in range(window):
    row = []
    for j in range(window):
      first = (windows[:, :, i, :, j, :] == y) & ~taken
      taken = taken | first
      row.append(jnp.where(first, dy, jnp.zeros_like(dy)))
    rows.append(jnp.stack(row, axis=3))  # [n, h', w', window, c]
  return (jnp.stack(rows, axis=2).reshape(x.shape),)


_tiled_max_pool.defvjp(_tiled_max_pool_fwd, _tiled_max_pool_bwd)


def relu_then_pool(path, layer: str, a: jax.Array, pool, error_after_pooling: bool):
  """pool(relu(a)), with `a` tapped as `layer` on `path` (a `fajax.direct.Path`).

  Where DFA's or DenseFA's error enters: at relu(a), before pooling (by default), or, with
  `error_after_pooling`, at the pooled output, as when the signal is delivered to the next
  layer's input (BioTorch's DFA layers); it then reaches a through pooling's own backward pass,
  at the maximum of each window only. Other methods compute the same either way.
  """
  if error_after_pooling:
    return path.activate(layer, a, lambda a: pool(nnx.relu(a)))
  return pool(path.activate(layer, a, nnx.relu))


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """Average over `size`×`size` bins spanning the input, as PyTorch's AdaptiveAvgPool2d."""
  _, h, w, _ = x.shape
  rows = []
  for i in range(size):
    r0, r1 = (i * h) // size, math.ceil((i + 1) * h / size)
    cols = []
    for j in range(size):
      c0, c1 = (j * w) // size, math.ceil((j + 1) * w / size)
      cols.append(jnp.mean(x[:, r0:r1, c0:c1, :], axis=(1, 2)))
    rows.append(jnp.stack(cols, axis=1))
  return jnp.stack(rows, axis=1)


def normalize(norm: nnx.BatchNorm | None, x: jax.Array) -> jax.Array:
  """`norm(x)` in x's dtype (or x, without a norm).

  The statistics are float32 (the model state's dtype), which would promote a bfloat16 x.
  """
  return x if norm is None else norm(x).astype(x.dtype)


class ConvBN(nnx.Module):
  """Feedback conv, then batch norm when `batch_norm` (the conv then has no bias)."""

  def __init__(self, in_features, out_features, kernel_size, *, strides=1, padding='SAME',
               batch_norm: bool, kernel_init, rngs: nnx.Rngs):
    self.conv = FeedbackConv(
        in_features, out_features, (kernel_size, kernel_size), strides=(strides, strides),
        padding=padding, use_bias=not batch_norm, kernel_init=kernel_init, rngs=rngs,
    )
    self.norm = nnx.BatchNorm(out_features, momentum=0.9, rngs=rngs) if batch_norm else None

  def __call__(self, x):
    return normalize(self.norm, self.conv(x))
