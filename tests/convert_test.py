"""`fajax.to_feedback`: each plain nnx layer becomes a feedback layer with the same weights and
outputs, backprop's gradients under B = W and B's input gradient otherwise; a caller's model
that keeps plain layers is refused unless `config.exact_layers` names them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax.convert import FEEDBACK_LAYERS, unconverted_layers
from fajax.errors import ConfigError
from tests.fixtures import PlainCNN, single, tiny_config, tiny_data

LAYERS = {  # name → (the nnx layer, made from rngs; an input shape)
    'linear': (lambda rngs: nnx.Linear(6, 5, rngs=rngs), (4, 6)),
    'linear_no_bias_two_batch_axes': (
        lambda rngs: nnx.Linear(6, 5, use_bias=False, rngs=rngs), (2, 3, 6)),
    'linear_bfloat16': (lambda rngs: nnx.Linear(6, 5, dtype=jnp.bfloat16, rngs=rngs), (4, 6)),
    'conv1d_int_kernel_size': (lambda rngs: nnx.Conv(3, 4, 3, rngs=rngs), (2, 10, 3)),
    'conv1d_strided_valid': (
        lambda rngs: nnx.Conv(3, 4, 4, strides=2, padding='VALID', rngs=rngs), (2, 11, 3)),
    'conv1d_causal_dilated': (
        lambda rngs: nnx.Conv(3, 4, 3, padding='CAUSAL', kernel_dilation=2, rngs=rngs),
        (2, 10, 3)),
    'conv2d': (lambda rngs: nnx.Conv(3, 4, (3, 3), rngs=rngs), (2, 7, 7, 3)),
    'conv2d_explicit_padding_dilated_no_bias': (
        lambda rngs: nnx.Conv(3, 4, (3, 2), padding=((2, 1), (0, 1)), kernel_dilation=(2, 1),
                              use_bias=False, rngs=rngs), (2, 8, 7, 3)),
    'conv2d_strided_valid_grouped': (
        lambda rngs: nnx.Conv(4, 6, (3, 3), strides=(2, 1), padding='VALID',
                              feature_group_count=2, rngs=rngs), (2, 9, 8, 4)),
    'conv2d_int_padding_input_dilated': (
        lambda rngs: nnx.Conv(3, 4, (3, 3), input_dilation=2, padding=1, rngs=rngs),
        (2, 5, 5, 3)),
    'conv2d_circular_masked': (
        lambda rngs: nnx.Conv(3, 4, (4, 3), padding='CIRCULAR',
                              mask=jnp.tril(jnp.ones((4, 3, 3, 4))), rngs=rngs), (2, 6, 6, 3)),
    'conv2d_reflect_two_batch_axes': (
        lambda rngs: nnx.Conv(3, 4, (2, 3), padding='REFLECT', rngs=rngs), (2, 2, 6, 6, 3)),
    'conv2d_no_batch_axis': (lambda rngs: nnx.Conv(3, 4, (3, 3), rngs=rngs), (6, 6, 3)),
    'conv3d_strided': (lambda rngs: nnx.Conv(3, 4, (2, 2, 2), strides=2, rngs=rngs),
                       (2, 6, 6, 6, 3)),
    'conv3d_valid_dilated_depthwise_no_bias': (
        lambda rngs: nnx.Conv(4, 4, (3, 2, 2), padding='VALID', kernel_dilation=(1, 2, 1),
                              feature_group_count=4, use_bias=False, rngs=rngs), (2, 5, 6, 4, 4)),
    'conv3d_bfloat16_params': (
        lambda rngs: nnx.Conv(3, 4, (3, 3, 3), param_dtype=jnp.bfloat16, dtype=jnp.bfloat16,
                              rngs=rngs), (2, 4, 4, 4, 3)),
    'linear_general': (
        lambda rngs: nnx.LinearGeneral((2, 3), (4, 5), axis=(1, -1), rngs=rngs), (6, 2, 3)),
    'linear_general_batch_axis': (
        lambda rngs: nnx.LinearGeneral(3, (2, 4), batch_axis={0: 2}, rngs=rngs), (2, 5, 3)),
    'einsum': (lambda rngs: nnx.Einsum('nta,hab->nthb', (8, 2, 4), (8, 4), rngs=rngs),
               (3, 5, 2)),
    'einsum_ellipsis_no_bias': (lambda rngs: nnx.Einsum('...a,ab->...b', (2, 4), rngs=rngs),
                                (3, 5, 2)),
}


def _case(name):
  """The nnx layer, its conversion (B an independent draw) and an input."""
  make, shape = LAYERS[name]
  layer = make(nnx.Rngs(0))
  return layer, fajax.to_feedback(layer, rngs=nnx.Rngs(feedback=1)), jax.random.normal(
      jax.random.key(2), shape)


def _close(actual, expected):
  """Equal up to float rounding: the CPU's 2-D convolutions are matmuls (fajax.kernel)."""
  tolerance = 2e-2 if jnp.result_type(expected) == jnp.bfloat16 else 2e-5
  np.testing.assert_allclose(np.asarray(actual, np.float32), np.asarray(expected, np.float32),
                             rtol=tolerance, atol=tolerance)


def _loss(y):
  """A loss whose cotangent differs at every output."""
  y = y.astype(jnp.float32)
  return jnp.sum(jnp.sin(y) * jnp.arange(y.size).reshape(y.shape) / y.size)


def _grads(module, x):
  """The loss's gradients with respect to the input and the module's W and biases."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  forward = lambda x, params: _loss(nnx.merge(graphdef, params, rest)(x))
  dx, dparams = jax.grad(forward, argnums=(0, 1))(x, params)
  return dx, nnx.to_pure_dict(dparams)


def _feedback_equal_to_weights(module):
  for _, layer in nnx.iter_modules(module):
    if hasattr(layer, 'feedback'):
      layer.feedback[...] = layer.kernel[...]


@pytest.mark.parametrize('name', LAYERS)
def test_a_converted_layer_holds_the_same_weights_and_computes_the_same_outputs(name):
  layer, converted, x = _case(name)
  assert type(converted) is FEEDBACK_LAYERS[type(layer)]
  assert converted.kernel[...] is layer.kernel[...]
  assert (converted.bias is None) == (layer.bias is None)
  if layer.bias is not None:
    assert converted.bias[...] is layer.bias[...]
  y = converted(x)
  assert y.shape == layer(x).shape and y.dtype == layer(x).dtype
  _close(y, layer(x))


@pytest.mark.parametrize('name', LAYERS)
def test_with_b_equal_w_a_converted_layer_has_the_originals_gradients(name):
  layer, converted, x = _case(name)
  _feedback_equal_to_weights(converted)
  (dx, dparams), (expected_dx, expected_dparams) = _grads(converted, x), _grads(layer, x)
  _close(dx, expected_dx)
  assert dparams.keys() == expected_dparams.keys()
  for param in dparams:
    _close(dparams[param], expected_dparams[param])


@pytest.mark.parametrize('name', LAYERS)
def test_with_random_b_the_input_gradient_goes_through_b_and_the_weight_gradient_is_backprops(
    name):
  layer, converted, x = _case(name)
  dx, dparams = _grads(converted, x)
  backprop_dx, backprop_dparams = _grads(layer, x)
  # Independent answer: the nnx layer with B as its kernel, transposed at the output's cotangent.
  with_b = nnx.clone(layer)
  with_b.kernel[...] = converted.feedback[...]
  dy = jax.grad(_loss)(layer(x))
  _close(dx, jax.vjp(with_b, x)[1](dy)[0])
  assert not np.allclose(np.asarray(dx, np.float32), np.asarray(backprop_dx, np.float32),
                         atol=0.05)
  for param in dparams:
    _close(dparams[param], backprop_dparams[param])


def test_b_is_drawn_from_rngs_feedback_with_the_given_initializer():
  layer = nnx.Linear(64, 64, rngs=nnx.Rngs(0))
  convert = lambda seed, **kwargs: np.asarray(
      fajax.to_feedback(layer, rngs=nnx.Rngs(feedback=seed), **kwargs).feedback[...])
  w, b = np.asarray(layer.kernel[...]), convert(1)
  # By default nnx's initializer, W's own, drawn independently of W.
  assert abs(np.corrcoef(w.ravel(), b.ravel())[0, 1]) < 0.05
  np.testing.assert_allclose(np.std(b), np.std(w), rtol=0.05)
  np.testing.assert_array_equal(convert(1), b)
  assert not np.allclose(convert(2), b)
  np.testing.assert_array_equal(convert(1, kernel_init=nnx.initializers.constant(0.5)),
                                np.full((64, 64), 0.5))


class Block(nnx.Module):

  def __init__(self, rngs):
    self.attention = nnx.MultiHeadAttention(2, 4, decode=False, rngs=rngs)
    self.mlp = nnx.Sequential(nnx.Linear(4, 8, rngs=rngs), nnx.relu, nnx.Linear(8, 4, rngs=rngs))

  def __call__(self, x):
    return self.mlp(x + self.attention(x))


class Containers(nnx.Module):
  """Layers in every place a model keeps them, one shared by two paths, and a LoRA layer."""

  def __init__(self, rngs):
    self.embed = nnx.Conv(3, 4, 3, rngs=rngs)
    self.blocks = nnx.List([Block(rngs), Block(rngs)])
    self.heads = nnx.Dict(first=nnx.Einsum('btd,dk->bk', (4, 2), rngs=rngs))
    self.pair = nnx.data((nnx.Linear(4, 4, rngs=rngs), nnx.relu))
    self.tied = self.pair[0]
    self.lora = nnx.LoRALinear(4, 4, lora_rank=2, rngs=rngs)

  def __call__(self, x):
    x = self.embed(x)
    for block in self.blocks:
      x = block(x)
    x = self.tied(self.pair[1](self.pair[0](x)))
    return self.heads['first'](self.lora(x))


def test_layers_anywhere_in_a_model_are_converted_at_their_paths():
  model = Containers(nnx.Rngs(0))
  plain = unconverted_layers(model)
  assert 'blocks/0/attention/query' in plain and 'blocks/1/mlp/layers/2' in plain
  converted = fajax.to_feedback(model, rngs=nnx.Rngs(feedback=1))
  # LoRALinear computes more than nnx.Linear: it stays, and is reported.
  assert unconverted_layers(converted) == ['lora']
  assert unconverted_layers(model) == plain  # the original is left as it was
  assert type(converted.blocks[1].attention.out) is fajax.FeedbackLinearGeneral
  assert type(converted.blocks[0].mlp.layers[0]) is fajax.FeedbackDense
  assert type(converted.heads['first']) is fajax.FeedbackEinsum
  assert type(converted.embed) is fajax.FeedbackConv
  assert converted.tied is converted.pair[0]
  params_of = lambda m: jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(m, nnx.Param)))
  jax.tree.map(np.testing.assert_array_equal, params_of(converted), params_of(model))
  x = jax.random.normal(jax.random.key(3), (2, 5, 3))
  _close(converted(x), model(x))
  _feedback_equal_to_weights(converted)
  (dx, dparams), (expected_dx, expected_dparams) = _grads(converted, x), _grads(model, x)
  _close(dx, expected_dx)
  jax.tree.map(_close, dparams, expected_dparams)


def test_a_converted_cnn_computes_the_same_outputs_and_under_b_equal_w_the_same_gradients():
  model = PlainCNN(nnx.Rngs(0))
  converted = fajax.to_feedback(model, rngs=nnx.Rngs(feedback=1))
  x = jax.random.normal(jax.random.key(4), (5, 8, 8, 1))
  _close(converted(x), model(x))
  assert not np.allclose(_grads(converted, x)[0], _grads(model, x)[0], atol=1e-3)
  _feedback_equal_to_weights(converted)
  (dx, dparams), (expected_dx, expected_dparams) = _grads(converted, x), _grads(model, x)
  _close(dx, expected_dx)
  jax.tree.map(_close, dparams, expected_dparams)


def test_a_converted_cnn_trains_with_fajax_build():
  converted = fajax.to_feedback(PlainCNN(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  experiment = fajax.build(tiny_config('fa'), model=converted, data=tiny_data())
  start = single(experiment.state)
  assert sorted(start.feedback) == ['conv1', 'conv2', 'fc', 'out']
  np.testing.assert_array_equal(start.feedback['conv2'], converted.conv2.feedback[...])
  state, batches = experiment.state, experiment.train_batches(start_step=0)
  for _ in range(3):
    state, metrics = experiment.train_step(state, *experiment.put_batch(*next(batches)))
    assert np.isfinite(single(metrics)['train/loss'])
  end = single(state)
  assert end.step == 3
  assert not np.allclose(end.params['conv1']['kernel'], start.params['conv1']['kernel'])
  np.testing.assert_array_equal(end.feedback['conv1'], start.feedback['conv1'])  # FA keeps B


class Encoder(nnx.Module):

  def __init__(self, rngs):
    self.proj = nnx.Linear(16, 16, rngs=rngs)


class PartlyConverted(nnx.Module):
  """Feedback layer `body`, plain layers 'encoder/proj' and 'head'."""

  def __init__(self, rngs):
    self.body = fajax.FeedbackDense(64, 16, rngs=rngs)
    self.encoder = Encoder(rngs)
    self.head = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.body(x.reshape(x.shape[0], -1)))
    return self.head(nnx.relu(self.encoder.proj(x)))


@pytest.mark.parametrize('exact_layers,left', [((), 'encoder/proj, head'),
                                               (('head',), 'encoder/proj')])
def test_plain_layers_left_in_a_model_are_a_config_error_naming_their_paths(exact_layers, left):
  with pytest.raises(ConfigError, match=(
      f"^model PartlyConverted has plain nnx layers that method 'fa' would train with exact "
      f'backprop: {left}; convert the model with fajax.to_feedback, or list them in '
      'config.exact_layers to keep them exact$')):
    fajax.build(tiny_config('fa', exact_layers=exact_layers), model=PartlyConverted(nnx.Rngs(0)),
                data=tiny_data())


@pytest.mark.parametrize('method,exact_layers', [('fa', ('encoder/proj', 'head', 'body')),
                                                 ('bp', ())])
def test_plain_layers_train_when_exact_layers_names_them_or_under_bp(method, exact_layers):
  experiment = fajax.build(tiny_config(method, exact_layers=exact_layers),
                           model=PartlyConverted(nnx.Rngs(0)), data=tiny_data())
  state, metrics = experiment.train_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(start_step=0))))
  assert np.isfinite(single(metrics)['train/loss'])
  # The feedback layers among exact_layers still get B = W.
  state = single(state)
  np.testing.assert_array_equal(state.feedback['body'], state.params['body']['kernel'])
