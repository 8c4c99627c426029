"""The feedback kernel over random shapes, strides, paddings and dilations (hypothesis).

The reference is written without fajax: the gradient of <lax op(x, B), dy> in x, which is the
input cotangent a feedback layer must propagate, and jax.grad of the lax op in W.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from jax import lax

from fajax import kernel

# Each example compiles one program (its shapes are new); 15 cost a few seconds.
EXAMPLES = settings(max_examples=15, deadline=None, derandomize=True)
CHANNELS_LAST = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC')}


@st.composite
def convolutions(draw):
  spatial_dims = draw(st.sampled_from([1, 2]))
  groups = draw(st.sampled_from([1, 1, 2]))
  in_features = groups * draw(st.integers(1, 3))
  out_features = groups * draw(st.integers(1, 3))
  window = [draw(st.integers(1, 3)) for _ in range(spatial_dims)]
  dilation = [draw(st.integers(1, 2)) for _ in range(spatial_dims)]
  strides = [draw(st.integers(1, 2)) for _ in range(spatial_dims)]
  padding = draw(st.one_of(
      st.sampled_from(['SAME', 'VALID']),
      st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=spatial_dims,
               max_size=spatial_dims)))
  # Inputs large enough for one output under VALID: the dilated window fits.
  spatial = [draw(st.integers((k - 1) * d + 1, (k - 1) * d + 6))
             for k, d in zip(window, dilation)]
  batch = draw(st.integers(1, 3))
  return dict(x_shape=(batch, *spatial, in_features),
              w_shape=(*window, in_features // groups, out_features),
              settings=dict(strides=tuple(strides), padding=padding,
                            rhs_dilation=tuple(dilation), feature_group_count=groups),
              seed=draw(st.integers(0, 2**16)))


def _arrays(seed, x_shape, w_shape):
  # numpy's draws: jax.random's would compile for every new shape.
  rng = np.random.default_rng(seed)
  return tuple(rng.standard_normal(shape, np.float32) for shape in (x_shape, w_shape, w_shape))


def _check_feedback_gradients(op, reference_op, x, w, b):
  y_shape = jax.eval_shape(reference_op, x, w).shape
  dy = np.random.default_rng(7).standard_normal(y_shape, np.float32)

  @jax.jit
  def gradients(x, w, b, dy):
    y = reference_op(x, w)
    y_op, vjp = jax.vjp(lambda x, w: kernel.feedback_op(op, x, w, b), x, w)
    expected_dx = jax.grad(lambda x: jnp.vdot(reference_op(x, b), dy))(x)
    expected_dw = jax.grad(lambda w: jnp.vdot(reference_op(x, w), dy))(w)
    return y_op, y, *vjp(dy), expected_dx, expected_dw

  y_op, y, dx, dw, expected_dx, expected_dw = gradients(x, w, b, dy)
  np.testing.assert_allclose(y_op, y, rtol=1e-4, atol=1e-4)
  scale = float(np.abs(dy).max()) * max(1, w.size // w.shape[-1])
  np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-5 * scale)
  np.testing.assert_allclose(dw, expected_dw, rtol=1e-4, atol=1e-5 * scale)


@EXAMPLES
@given(convolutions())
def test_conv_gradients_use_b_for_the_input_and_x_for_the_weights(case):
  x, w, b = _arrays(case['seed'], case['x_shape'], case['w_shape'])
  spatial_dims = w.ndim - 2
  settings_ = case['settings']
  reference = functools.partial(
      lax.conv_general_dilated, window_strides=settings_['strides'],
      padding=settings_['padding'], rhs_dilation=settings_['rhs_dilation'],
      feature_group_count=settings_['feature_group_count'],
      dimension_numbers=CHANNELS_LAST[spatial_dims])
  _check_feedback_gradients(functools.partial(kernel.conv, **settings_), reference, x, w, b)


@EXAMPLES
@given(batch_shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
       in_features=st.integers(1, 9), out_features=st.integers(1, 9),
       seed=st.integers(0, 2**16))
def test_dense_gradients_use_b_for_the_input_and_x_for_the_weights(
    batch_shape, in_features, out_features, seed):
  x, w, b = _arrays(seed, (*batch_shape, in_features), (in_features, out_features))
  _check_feedback_gradients(kernel.dense, lambda x, w: x @ w, x, w, b)
