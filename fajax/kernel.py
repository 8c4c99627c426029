"""The feedback kernel: one `custom_vjp` that swaps feedback weights B in for W.

Every feedback layer computes `y = op(x, W)` with `op` linear in `x` and in `W`. Exact
backprop propagates `dx = op_x^T(dy; W)`; a feedback rule propagates `dx = op_x^T(dy; B)`
instead, while `dW = op_W^T(dy; x)` stays the ordinary local weight gradient. Both transposes
come from `jax.linear_transpose` of the forward op, so one kernel serves dense layers and
convolutions of any stride, padding, dilation or feature grouping, and with B = W it returns
exactly what `jax.grad` of the plain op returns.
"""

import functools
from collections.abc import Callable, Sequence

import jax
from jax import lax

Op = Callable[[jax.Array, jax.Array], jax.Array]


def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """`x @ kernel` over the last axis of x; kernel is [in_features, out_features]."""
  return lax.dot_general(x, kernel, (((x.ndim - 1,), (0,)), ((), ())))


def conv(
    x: jax.Array,
    kernel: jax.Array,
    *,
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = 'VALID',
    rhs_dilation: Sequence[int] = (1, 1),
    feature_group_count: int = 1,
) -> jax.Array:
  """2-D convolution, x in NHWC, kernel in HWIO."""
  return lax.conv_general_dilated(
      x,
      kernel,
      window_strides=tuple(strides),
      padding=padding if isinstance(padding, str) else tuple(padding),
      rhs_dilation=tuple(rhs_dilation),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      feature_group_count=feature_group_count,
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def feedback_op(op: Op, x: jax.Array, kernel: jax.Array, feedback: jax.Array) -> jax.Array:
  """`op(x, kernel)` whose input cotangent is computed with `feedback` in place of `kernel`.

  `feedback` receives no gradient: it is changed only by a feedback rule.
  """
  del feedback
  return op(x, kernel)


def _feedback_op_fwd(op, x, kernel, feedback):
  # The op is linear in both arguments, so the backward pass needs x and B, never W.
  return op(x, kernel), (x, feedback)


def _feedback_op_bwd(op, residuals, dy):
  x, feedback = residuals
  (dx,) = jax.linear_transpose(lambda x_: op(x_, feedback), x)(dy)
  (dkernel,) = jax.linear_transpose(lambda k_: op(x, k_), feedback)(dy)
  return dx, dkernel, None


feedback_op.defvjp(_feedback_op_fwd, _feedback_op_bwd)
