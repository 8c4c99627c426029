"""The feedback kernel against independently computed known answers."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fajax import kernel

CONV_SETTINGS = [
    dict(strides=(1, 1), padding='VALID'),
    dict(strides=(2, 2), padding='SAME'),
    dict(strides=(1, 2), padding=((2, 1), (0, 3)), rhs_dilation=(2, 1)),
    dict(strides=(1, 1), padding='SAME', feature_group_count=2),
    dict(strides=(2, 1), padding='VALID', feature_group_count=4),  # depthwise
    dict(strides=(1, 1), padding=((1, 1), (2, 0)), lhs_dilation=(2, 1)),
    # One input channel and few outputs: on CPU, one matmul with a banded matrix.
    dict(strides=(1, 1), padding='VALID', in_features=1),
    dict(strides=(1, 1), padding=((2, 1), (0, 3)), in_features=1),
    # 1-D and 3-D
    dict(strides=(2,), padding='SAME'),
    dict(strides=(1,), padding=((2, 1),), rhs_dilation=(2,), feature_group_count=2),
    dict(strides=(1, 2, 1), padding='SAME'),
    dict(strides=(1, 1, 1), padding='VALID', rhs_dilation=(1, 2, 1), feature_group_count=4),
    dict(strides=(2, 1, 1), padding=((0, 1), (1, 1), (1, 0)), lhs_dilation=(1, 2, 2)),
]
SPATIAL_SHAPES = {1: (11,), 2: (9, 8), 3: (5, 6, 7)}
CHANNELS_LAST = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC'),
                 3: ('NDHWC', 'DHWIO', 'NDHWC')}


def _conv_case(settings):
  settings = dict(settings)
  in_features = settings.pop('in_features', 4)
  groups = settings.get('feature_group_count', 1)
  spatial = SPATIAL_SHAPES[len(settings['strides'])]
  op = functools.partial(kernel.conv, **settings)
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (3, *spatial, in_features))
  w = jax.random.normal(keys[1], (*(3,) * len(spatial), in_features // groups, 8))
  b = jax.random.normal(keys[2], w.shape)
  return op, x, w, b


def _dense_case():
  keys = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(keys[0], (5, 7))
  w = jax.random.normal(keys[1], (7, 3))
  b = jax.random.normal(keys[2], w.shape)
  return kernel.dense, x, w, b


CASES = [pytest.param(_dense_case, id='dense')] + [
    pytest.param(functools.partial(_conv_case, s), id=f'conv{i}')
    for i, s in enumerate(CONV_SETTINGS)
]


def _loss(y):
  return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)


@pytest.mark.parametrize('case', CASES)
def test_with_b_equal_w_gradients_are_exactly_backprop(case):
  op, x, w, _ = case()
  fb = jax.grad(lambda x, w: _loss(kernel.feedback_op(op, x, w, w)), argnums=(0, 1))(x, w)
  bp = jax.grad(lambda x, w: _loss(op(x, w)), argnums=(0, 1))(x, w)
  np.testing.assert_array_equal(fb[0], bp[0])
  np.testing.assert_array_equal(fb[1], bp[1])


@pytest.mark.parametrize('case', CASES)
def test_with_random_b_input_cotangent_is_transposed_op_with_b(case):
  op, x, w, b = case()
  dy = jax.grad(_loss)(op(x, w))
  dx = jax.grad(lambda x: _loss(kernel.feedback_op(op, x, w, b)))(x)
  # Independent answer: <op(x, B), dy> is linear in x, so its gradient is op_x^T(dy; B).
  expected = jax.grad(lambda x: jnp.vdot(op(x, b), dy))(x)
  np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1e-5)
  # and it is not what BP propagates.
  assert not np.allclose(dx, jax.grad(lambda x: _loss(op(x, w)))(x), atol=1e-3)


@pytest.mark.parametrize('case', CASES)
def test_with_random_b_weight_gradient_is_backprops_and_b_gets_none(case):
  op, x, w, b = case()
  dw, db = jax.grad(lambda w, b: _loss(kernel.feedback_op(op, x, w, b)), argnums=(0, 1))(w, b)
  np.testing.assert_array_equal(dw, jax.grad(lambda w: _loss(op(x, w)))(w))
  np.testing.assert_array_equal(db, np.zeros_like(b))


def test_dense_matches_hand_written_transposes():
  _, x, w, b = _dense_case()
  dy = jax.random.normal(jax.random.key(2), (5, 3))
  _, vjp = jax.vjp(lambda x, w: kernel.feedback_op(kernel.dense, x, w, b), x, w)
  dx, dw = vjp(dy)
  np.testing.assert_allclose(dx, dy @ b.T, rtol=1e-6)
  np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-6)


def test_works_under_jit_and_vmap():
  op, x, w, b = _conv_case(CONV_SETTINGS[1])
  # A loss that is a sum over examples, so per-example gradients add up to the batch's.
  loss = lambda x, w: jnp.sum(jnp.sin(kernel.feedback_op(op, x, w, b)))
  grad_fn = jax.grad(loss, argnums=(0, 1))
  per_example = jax.jit(jax.vmap(grad_fn, in_axes=(0, None)))(x[:, None], w)
  whole = grad_fn(x, w)
  np.testing.assert_allclose(per_example[0][:, 0], whole[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(per_example[1].sum(0), whole[1], rtol=1e-4, atol=1e-4)


def test_second_order_through_the_weight_gradient():
  # grad of a function of dW: the custom backward is itself differentiable in x.
  _, x, w, b = _dense_case()
  feedback_loss = lambda x, w: _loss(kernel.feedback_op(kernel.dense, x, w, b))
  inner = lambda x: jnp.sum(jax.grad(lambda w: feedback_loss(x, w))(w) ** 2)
  expected = lambda x: jnp.sum(jax.grad(lambda w: _loss(kernel.dense(x, w)))(w) ** 2)
  np.testing.assert_allclose(jax.grad(inner)(x), jax.grad(expected)(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('settings', CONV_SETTINGS)
def test_conv_and_its_transposes_match_lax_convolution(settings):
  op, x, w, _ = _conv_case(settings)
  ones = (1,) * (w.ndim - 2)
  direct = functools.partial(
      lax.conv_general_dilated, window_strides=settings['strides'],
      padding=settings['padding'], lhs_dilation=settings.get('lhs_dilation', ones),
      rhs_dilation=settings.get('rhs_dilation', ones),
      dimension_numbers=CHANNELS_LAST[w.ndim - 2],
      feature_group_count=settings.get('feature_group_count', 1))
  y = direct(x, w)
  np.testing.assert_allclose(op(x, w), y, rtol=1e-5, atol=1e-5)
  for argnum in (0, 1):
    got, expected = (
        jax.linear_transpose(lambda a, f=f: f(*((a, w) if argnum == 0 else (x, a))),
                             (x, w)[argnum])(y)[0]
        for f in (op, direct)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def _compiled_ops(settings, x_shape, w_shape):
  op = functools.partial(kernel.conv, **settings)
  x, w = jnp.zeros(x_shape), jnp.zeros(w_shape)
  grad = jax.grad(lambda x, w: jnp.sum(op(x, w)), argnums=(0, 1))
  return jax.jit(grad).lower(x, w).compile().as_text()


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the im2col formulation is CPU only')
def test_small_convolutions_run_as_matmuls_on_cpu_and_large_ones_as_convolutions():
  small = _compiled_ops(dict(padding='SAME'), (8, 16, 16, 3), (5, 5, 3, 32))
  assert 'convolution(' not in small and 'concatenate(' in small
  window_covers_image = _compiled_ops(dict(padding='SAME'), (2, 4, 4, 32), (3, 3, 32, 32))
  assert 'convolution(' not in window_covers_image
  # 128·32·32 outputs × 5·5·64 inputs each × 4 bytes = 840 MB of stacked windows: too large.
  large = _compiled_ops(dict(padding='SAME'), (128, 32, 32, 64), (5, 5, 64, 64))
  assert 'convolution(' in large
  grouped = _compiled_ops(dict(feature_group_count=2), (2, 8, 8, 4), (3, 3, 2, 4))
  assert 'convolution(' in grouped
  # im2col is for 2-D convolutions of undilated inputs only.
  one_d = _compiled_ops(dict(padding='SAME'), (8, 16, 3), (5, 3, 32))
  three_d = _compiled_ops(dict(padding='SAME'), (2, 6, 6, 6, 3), (3, 3, 3, 3, 8))
  input_dilated = _compiled_ops(dict(padding=((2, 2), (2, 2)), lhs_dilation=(2, 2)),
                                (8, 16, 16, 3), (5, 5, 3, 32))
  assert all('convolution(' in ops for ops in (one_d, three_d, input_dilated))


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the banded formulation is CPU only')
def test_one_input_channel_and_few_outputs_run_as_one_banded_matmul():
  def matmul(x_shape, w_shape, **settings):
    """The weights' shape in the matmul that computes the output."""
    jaxpr = jax.make_jaxpr(functools.partial(kernel.conv, **settings))(
        jnp.zeros(x_shape), jnp.zeros(w_shape))
    [*_, last] = [e for e in jaxpr.eqns if e.primitive.name == 'dot_general']
    return last.invars[1].aval.shape

  # LeNet-5's conv1: 5 rows of the 32-wide image against a (5·32) × (28·6) banded matrix.
  assert matmul((2, 32, 32, 1), (5, 5, 1, 6)) == (5 * 32, 28 * 6)
  assert matmul((2, 28, 28, 1), (3, 3, 1, 8), padding='SAME') == (3 * 30, 28 * 8)
  # Not for more outputs, more input channels, strides, or wide images (im2col's inner size
  # is kh·kw·C_in).
  assert matmul((2, 28, 28, 1), (5, 5, 1, 16)) == (25, 16)
  assert matmul((2, 32, 32, 3), (5, 5, 3, 6)) == (75, 6)
  assert matmul((2, 32, 32, 1), (5, 5, 1, 6), strides=(2, 2)) == (25, 6)
  assert matmul((2, 96, 96, 1), (5, 5, 1, 6)) == (25, 6)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the im2col formulation is CPU only')
def test_a_forward_pass_alone_takes_xla_convolution_for_large_windows():
  keys = jax.random.split(jax.random.key(2), 2)
  x, w = jax.random.normal(keys[0], (8, 16, 16, 3)), jax.random.normal(keys[1], (5, 5, 3, 32))
  op = functools.partial(kernel.conv, strides=(1, 2), padding='SAME')
  compiled = lambda w, **flags: jax.jit(functools.partial(op, **flags)).lower(x, w).compile()
  assert 'convolution(' not in compiled(w).as_text()
  assert 'convolution(' in compiled(w, forward_only=True).as_text()
  assert 'convolution(' not in compiled(w[1:4, 1:4], forward_only=True).as_text()  # 3×3
  # Where the window covers the image, XLA's convolution stays slow even without transposes.
  covering = jax.jit(functools.partial(kernel.conv, forward_only=True)).lower(
      jnp.zeros((2, 5, 5, 16)), jnp.zeros((5, 5, 16, 32))).compile().as_text()
  assert 'convolution(' not in covering
  np.testing.assert_allclose(op(x, w, forward_only=True), op(x, w), rtol=1e-5, atol=1e-4)


def test_feedback_op_runs_its_forward_only_op_only_where_not_differentiated():
  _, x, w, b = _dense_case()
  doubled = lambda x, w: 2 * kernel.dense(x, w)  # told apart from the op by its values
  np.testing.assert_allclose(kernel.feedback_op(kernel.dense, x, w, b, doubled),
                             2 * kernel.dense(x, w), rtol=1e-6)
  y, pullback = jax.vjp(lambda x, w: kernel.feedback_op(kernel.dense, x, w, b, doubled), x, w)
  np.testing.assert_allclose(y, kernel.dense(x, w), rtol=1e-6)
  dx, dw = pullback(jnp.ones_like(y))
  np.testing.assert_allclose(dx, jnp.ones_like(y) @ b.T, rtol=1e-5)
  np.testing.assert_allclose(dw, x.T @ jnp.ones_like(y), rtol=1e-5)


def test_feedback_op_computes_the_input_gradient_by_its_input_gradient_op_only():
  _, x, w, b = _dense_case()
  doubled = lambda x, w: 2 * kernel.dense(x, w)  # told apart from the op by its values
  y, pullback = jax.vjp(
      lambda x, w: kernel.feedback_op(kernel.dense, x, w, b, input_gradient_op=doubled), x, w)
  np.testing.assert_allclose(y, kernel.dense(x, w), rtol=1e-6)
  dx, dw = pullback(jnp.ones_like(y))
  np.testing.assert_allclose(dx, 2 * jnp.ones_like(y) @ b.T, rtol=1e-5)
  np.testing.assert_allclose(dw, x.T @ jnp.ones_like(y), rtol=1e-5)


@pytest.mark.skipif(jax.default_backend() != 'cpu', reason='the banded formulation is CPU only')
def test_an_input_gradient_alone_takes_the_banded_route_for_lenet5s_conv2_at_large_batches():
  def input_gradient(x, w, **settings):
    """The shape of the weights in the matmul of the input gradient's route, checking its
    values against the plain op's transpose."""
    op = functools.partial(kernel.conv, input_gradient_only=True, **settings)
    transpose = lambda dy: jax.linear_transpose(lambda x_: op(x_, w), x)(dy)[0]
    dy = jnp.cos(jnp.arange(math.prod(jax.eval_shape(op, x, w).shape), dtype=jnp.float32))
    dy = dy.reshape(jax.eval_shape(op, x, w).shape)
    [*_, last] = [e for e in jax.make_jaxpr(transpose)(dy).eqns
                  if e.primitive.name == 'dot_general']
    expected = jax.linear_transpose(lambda x_: kernel.conv(x_, w, **settings), x)(dy)[0]
    np.testing.assert_allclose(transpose(dy), expected, rtol=1e-5, atol=1e-4)
    return last.invars[1].aval.shape

  keys = jax.random.split(jax.random.key(3), 2)
  w = jax.random.normal(keys[1], (5, 5, 6, 16))
  x = jax.random.normal(keys[0], (64, 14, 14, 6))
  # LeNet-5's conv2 at batch 64: its 5 rows of 14 against a (5·14·6) × (10·16) banded matrix.
  assert input_gradient(x, w) == (5 * 14 * 6, 10 * 16)
  # Not at small batches, for more outputs, or where the window is small beside the image.
  assert input_gradient(x[:32], w) == (25 * 6, 16)
  assert input_gradient(x, jnp.tile(w, 2)) == (25 * 6, 32)
  assert input_gradient(jnp.tile(x, (1, 2, 2, 1)), w) == (25 * 6, 16)


def test_b_proportional_to_w_gives_bps_backward_direction_exactly():
  # BP + Alignment: B = c·W, so the backward signal is c times BP's, the same direction.
  op, x, w, _ = _conv_case(CONV_SETTINGS[1])
  bp = jax.grad(lambda x: _loss(op(x, w)))(x)
  aligned = jax.grad(lambda x: _loss(kernel.feedback_op(op, x, w, 0.25 * w)))(x)
  cosine = jnp.vdot(aligned, bp) / (jnp.linalg.norm(aligned) * jnp.linalg.norm(bp))
  np.testing.assert_allclose(cosine, 1.0, rtol=1e-6)
  np.testing.assert_allclose(aligned, 0.25 * bp, rtol=1e-5, atol=1e-8)
