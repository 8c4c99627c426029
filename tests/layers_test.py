"""Feedback layers: where W, bias and B live, and what the backward pass uses."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from fajax import kernel
from fajax.layers import Feedback, FeedbackConv, FeedbackDense


def test_dense_holds_w_and_bias_as_params_and_b_apart():
  layer = FeedbackDense(30, 20, rngs=nnx.Rngs(params=0, feedback=1))
  params = nnx.to_pure_dict(nnx.state(layer, nnx.Param))
  feedback = nnx.to_pure_dict(nnx.state(layer, Feedback))
  assert set(params) == {'kernel', 'bias'}
  assert set(feedback) == {'feedback'}
  assert layer.feedback.shape == layer.kernel.shape


def test_b_is_an_independent_draw_from_the_kernel_initializer():
  layer = FeedbackConv(64, 64, (3, 3), rngs=nnx.Rngs(params=0, feedback=1))
  w, b = np.asarray(layer.kernel[...]), np.asarray(layer.feedback[...])
  assert abs(np.corrcoef(w.ravel(), b.ravel())[0, 1]) < 0.05
  assert not np.array_equal(w, b)
  np.testing.assert_allclose(np.std(b), np.std(w), rtol=0.05)


def test_conv_layer_backward_uses_b():
  layer = FeedbackConv(3, 4, (3, 3), strides=(2, 2), padding='SAME',
                       rngs=nnx.Rngs(params=0, feedback=1))
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 3))
  dx = jax.grad(lambda x: jnp.sum(layer(x) ** 2))(x)
  y = layer(x)
  op = lambda x, w: kernel.conv(x, w, strides=(2, 2), padding='SAME')
  expected = jax.vjp(lambda x: op(x, layer.feedback[...]), x)[1](2 * y)[0]
  np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-5)


def test_optimizer_over_params_never_touches_b():
  layer = FeedbackDense(8, 4, rngs=nnx.Rngs(params=0, feedback=1))
  b_before = np.asarray(layer.feedback[...]).copy()
  tx = optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.5, momentum=0.9))
  optimizer = nnx.Optimizer(layer, tx, wrt=nnx.Param)
  x = jax.random.normal(jax.random.key(3), (16, 8))
  w_before = np.asarray(layer.kernel[...]).copy()
  for _ in range(3):
    grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(layer)
    optimizer.update(layer, grads)
  np.testing.assert_array_equal(layer.feedback[...], b_before)
  assert not np.allclose(layer.kernel[...], w_before)
