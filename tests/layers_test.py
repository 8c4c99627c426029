"""Feedback layers: where W, bias and B live, what the backward pass uses, and their likeness to
nnx's layers (tests/convert_test.py checks their forward and backward passes against nnx's)."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax

from fajax import kernel
from fajax.general_layers import FeedbackEinsum, FeedbackLinearGeneral
from fajax.layers import Feedback, FeedbackConv, FeedbackDense

NNX_COUNTERPARTS = [(nnx.Linear, FeedbackDense), (nnx.Conv, FeedbackConv),
                    (nnx.LinearGeneral, FeedbackLinearGeneral), (nnx.Einsum, FeedbackEinsum)]


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


def test_conv_layer_takes_the_input_gradients_own_route():
  # LeNet-5's conv2 at batch 64: the input gradient by the banded route (`kernel.conv`), the
  # forward pass and the weight gradient by im2col; the values those of XLA's convolution.
  layer = FeedbackConv(6, 16, (5, 5), padding='VALID', rngs=nnx.Rngs(params=0, feedback=1))
  x = jax.random.normal(jax.random.key(2), (64, 14, 14, 6))
  loss = lambda x: jnp.sum(jnp.sin(layer(x)))
  matmuls = [e.invars[1].aval.shape for e in jax.make_jaxpr(jax.grad(loss))(x).eqns
             if e.primitive.name == 'dot_general']
  assert (5 * 14 * 6, 10 * 16) in matmuls and (25 * 6, 16) in matmuls
  plain = lambda x, w: lax.conv_general_dilated(x, w, (1, 1), 'VALID',
                                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  _, pullback = jax.vjp(lambda x: plain(x, layer.feedback[...]), x)
  expected = pullback(jnp.cos(layer(x)))[0]
  np.testing.assert_allclose(jax.grad(loss)(x), expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(layer(x), plain(x, layer.kernel[...]) + layer.bias[...],
                             rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize('plain,feedback', NNX_COUNTERPARTS, ids=lambda c: c.__name__)
def test_constructors_and_calls_take_the_nnx_layers_arguments_with_their_defaults(plain, feedback):
  described = lambda method: [(p.name, p.kind, p.default)
                              for p in inspect.signature(method).parameters.values()]
  assert described(feedback.__init__) == described(plain.__init__)
  assert described(feedback.__call__) == described(plain.__call__)


def test_conv_reads_an_int_kernel_size_as_1d_and_pads_same_by_default():
  layer = FeedbackConv(3, 4, 3, rngs=nnx.Rngs(params=0, feedback=1))
  assert layer.kernel.shape == layer.feedback.shape == (3, 3, 4)
  assert layer(jnp.ones((2, 10, 3))).shape == (2, 10, 4)


def test_b_and_w_are_drawn_by_the_given_initializer():
  init = nnx.initializers.constant(0.25)
  layer = FeedbackConv(2, 3, (2, 2, 2), kernel_init=init, rngs=nnx.Rngs(params=0, feedback=1))
  np.testing.assert_array_equal(layer.kernel[...], np.full((2, 2, 2, 2, 3), 0.25))
  np.testing.assert_array_equal(layer.feedback[...], layer.kernel[...])


@pytest.mark.parametrize('make,argument', [
    (lambda rngs: FeedbackDense(2, 3, dot_general=jnp.dot, rngs=rngs), 'dot_general'),
    (lambda rngs: FeedbackConv(2, 3, 3, conv_general_dilated=lambda *a, **k: None, rngs=rngs),
     'conv_general_dilated'),
    (lambda rngs: FeedbackLinearGeneral(2, 3, dot_general_cls=object, rngs=rngs),
     'dot_general_cls'),
    (lambda rngs: FeedbackEinsum('ab,bc->ac', (2, 3), einsum_op=np.einsum, rngs=rngs),
     'einsum_op'),
], ids=['dense', 'conv', 'linear_general', 'einsum'])
def test_an_op_the_backward_pass_cannot_transpose_is_a_value_error(make, argument):
  with pytest.raises(ValueError, match=f'{argument}=.* cannot be honoured by a feedback layer'):
    make(nnx.Rngs(0))


def test_an_explicit_output_sharding_is_a_value_error():
  layer = FeedbackDense(2, 3, rngs=nnx.Rngs(0))
  with pytest.raises(ValueError, match='out_sharding=.* cannot be honoured'):
    layer(jnp.ones((1, 2)), out_sharding=jax.sharding.PartitionSpec())


def _readout_angle_after_training(feedback_layer: bool) -> float:
  """Degrees between the readout's W and B after 1000 SGD steps of a 30 → 100 → 10 tanh network
  learning a random linear teacher, its readout a feedback layer or a plain nnx.Linear (whose
  B-shaped random matrix then plays no part)."""
  rngs = nnx.Rngs(0, feedback=1)
  hidden = FeedbackDense(30, 100, rngs=rngs)
  feedback_readout = FeedbackDense(100, 10, rngs=rngs)
  readout = feedback_readout if feedback_layer else nnx.Linear(100, 10, rngs=rngs)
  b = feedback_readout.feedback[...]
  net = nnx.List([hidden, readout])
  optimizer = nnx.Optimizer(net, optax.sgd(0.05, momentum=0.9), wrt=nnx.Param)
  teacher = jax.random.normal(jax.random.key(5), (30, 10)) / np.sqrt(30)

  @nnx.jit
  def train(net, optimizer):
    def step(i, carry):
      net, optimizer = carry
      x = jax.random.normal(jax.random.fold_in(jax.random.key(9), i), (64, 30))
      loss = lambda n: jnp.mean((n[1](jnp.tanh(n[0](x))) - x @ teacher) ** 2)
      optimizer.update(net, nnx.grad(loss)(net))
      return net, optimizer
    nnx.fori_loop(0, 1000, step, (net, optimizer))

  train(net, optimizer)
  w = readout.kernel[...].ravel()
  return float(np.degrees(np.arccos(w @ b.ravel() / np.linalg.norm(w) / np.linalg.norm(b))))


def test_fa_forward_weights_come_to_align_with_b():
  # Lillicrap et al. 2016: under feedback alignment the forward weights learn to agree with the
  # fixed random B (here ≈ 57°, from 90° at the start); nothing pulls a W that B never meets.
  assert _readout_angle_after_training(feedback_layer=True) < 70
  assert _readout_angle_after_training(feedback_layer=False) > 85
