"""The CIFAR-10 and ImageNet models: shapes, sizes, and BP gradients equal to plain autodiff."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fajax import kernel
from fajax import models
from fajax import train_state
from fajax.errors import ConfigError
from fajax.layers import Feedback
from fajax.models import common
from tests.fixtures import STRIDED_SLICE

CASES = {  # model: (input shape, classes, parameter count of the reference implementation)
    'cifar_convnet': ((32, 32, 3), 10, None),
    'cifar_convnet_bn': ((32, 32, 3), 10, None),
    'resnet20': ((32, 32, 3), 10, 269_722),  # He et al. 2016: 0.27 M
    'resnet18': ((64, 64, 3), 1000, 11_689_512),  # torchvision resnet18: 11.7 M
    'alexnet': ((64, 64, 3), 1000, 61_100_840),  # torchvision alexnet
    'alexnet_bn': ((64, 64, 3), 1000, None),
}


@functools.cache
def _split_model(name, mode):
  shape, classes, _ = CASES[name]
  create = lambda: nnx.split(models.create(name, classes, shape, 'he_normal',
                                           nnx.Rngs(params=0, feedback=1, dropout=2),
                                           direct_mode=mode))
  # One program, optimised as fajax's own draw is only for a large network: drawn op by op
  # under the suite's unoptimised XLA, AlexNet's 61 M weights and their B take ≈ 40 s, in
  # one optimised program ≈ 14 s; ResNet-20's 0.5 M values compiled 8.7 s optimised (its
  # shape test 8.8 → 5.4 s unoptimised).
  num_values = sum(x.size for x in jax.tree.leaves(jax.eval_shape(create)[1]))
  return jax.jit(create, compiler_options=train_state._init_compiler_options(num_values))()


def _create(name, mode='adjacent'):
  """The model, drawn once per file: each call merges modules of its own (the tests change
  their variables and modes), holding the same immutable arrays."""
  return nnx.merge(*_split_model(name, mode))


def _count(model, variable_type):
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, variable_type)))


@pytest.mark.parametrize('name', sorted(CASES))
def test_output_shape_and_parameter_count(name):
  model = _create(name)
  shape, classes, expected = CASES[name]
  model.eval()
  # Jitted: run eagerly, the im2col convolutions compile op by op (AlexNet: ~30 s).
  assert nnx.jit(lambda m: m(jnp.zeros((2, *shape))))(model).shape == (2, classes)
  if expected is not None:
    assert _count(model, nnx.Param) == expected
  # Every conv and dense kernel has feedback weights of its own shape.
  params = nnx.to_flat_state(nnx.state(model, nnx.Param))
  kernels = [v for path, v in params if path[-1] == 'kernel']
  assert _count(model, Feedback) == sum(k.size for k in kernels)


def test_cifar_convnet_size_matches_the_dfa_papers_layers():
  # conv 3→96, 96→128, 128→256 at 5×5 with biases; FC 4096→2048→2048→10.
  expected = (5 * 5 * 3 * 96 + 96 + 5 * 5 * 96 * 128 + 128 + 5 * 5 * 128 * 256 + 256
              + 4096 * 2048 + 2048 + 2048 * 2048 + 2048 + 2048 * 10 + 10)
  assert _count(_create('cifar_convnet'), nnx.Param) == expected


@pytest.mark.parametrize('name', sorted(CASES))
def test_bp_gradients_equal_plain_autodiff(name, monkeypatch):
  model = _create(name)
  model.eval()  # running batch-norm statistics, no dropout: the same function twice
  # B = W in every layer (the BP rule).
  for _, module in nnx.iter_modules(model):
    if hasattr(module, 'feedback') and isinstance(module.feedback, Feedback):
      module.feedback[...] = module.kernel[...]
  shape, classes, _ = CASES[name]
  x = jax.random.normal(jax.random.key(0), (2, *shape))
  labels = jnp.array([1, 7]) % classes

  def loss(m):
    logits = m(x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels])

  # A fresh jit for each, so the second one traces the patched kernel.
  with_feedback = nnx.to_pure_dict(nnx.jit(nnx.grad(loss))(model))
  monkeypatch.setattr(kernel, 'feedback_op', lambda op, x, w, b, *routes: op(x, w))
  plain = nnx.to_pure_dict(nnx.jit(nnx.grad(loss))(model))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
               with_feedback, plain)


def test_dfa_works_on_the_cifar_convnet():
  model = _create('cifar_convnet', mode='output')
  assert set(model.direct.matrices) == {
      'conv1_from_output', 'conv2_from_output', 'conv3_from_output', 'fc1_from_output'}
  x = jax.random.normal(jax.random.key(0), (4, 32, 32, 3))
  grads = nnx.to_pure_dict(
      nnx.jit(nnx.grad(lambda m: jnp.sum(jax.nn.log_softmax(m(x))[:, 3])))(model))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert np.linalg.norm(grads['conv1']['conv']['kernel']) > 0


def test_densefa_on_resnet18_is_refused_before_allocating():
  # Abstractly, as `fajax.build` creates its network (drawn eagerly: 7 s).
  with pytest.raises(ConfigError, match=r"'all' feedback matrices of resnet18 need [\d,.]+ MB"):
    jax.eval_shape(lambda: models.create('resnet18', 1000, (224, 224, 3), 'he_normal',
                                         nnx.Rngs(params=0, feedback=1, dropout=2),
                                         direct_mode='all', direct_memory_budget_mb=2048))


def test_lenet5_width_multiplies_every_hidden_layer():
  model = models.create('lenet5', 10, (32, 32, 1), 'fan_in_uniform', nnx.Rngs(0, feedback=1),
                        width=2)
  widths = [getattr(model, name).kernel.shape[-1]
            for name in ('conv1', 'conv2', 'conv3', 'fc1', 'fc2')]
  assert widths == [12, 32, 240, 168, 10]
  assert model(jnp.zeros((2, 32, 32, 1))).shape == (2, 10)


def test_a_width_on_a_model_of_fixed_width_is_refused():
  with pytest.raises(ConfigError, match='model resnet20 has a fixed width; set model_width=1'):
    models.create('resnet20', 10, (32, 32, 3), 'he_normal', nnx.Rngs(0), width=2)


def test_a_model_refuses_inputs_it_was_not_made_for():
  with pytest.raises(ConfigError, match='model resnet20 takes 32×32×3 inputs but the dataset'):
    models.create('resnet20', 10, (28, 28, 1), 'he_normal', nnx.Rngs(params=0, feedback=1))


@pytest.mark.parametrize('window,stride,padding', [(2, 2, 'VALID'), (3, 2, 'SAME'), (3, 2, 'VALID')])
def test_max_pool_matches_flax_values_and_gradients(window, stride, padding):
  x = jax.random.normal(jax.random.key(0), (2, 9, 8, 3))
  ours = lambda x: common.max_pool(x, window, stride, padding)
  flax_pool = lambda x: nnx.max_pool(x, (window, window), (stride, stride), padding)
  np.testing.assert_array_equal(ours(x), flax_pool(x))
  weights = jnp.arange(ours(x).size, dtype=jnp.float32).reshape(ours(x).shape)
  grads = [jax.grad(lambda x, f=f: jnp.sum(f(x) * weights))(x) for f in (ours, flax_pool)]
  np.testing.assert_array_equal(*grads)


@pytest.mark.parametrize('window', [2, 3])
def test_tiled_max_pool_sends_the_gradient_to_each_windows_first_maximum_as_flax_does(window):
  # Rounded values and a ReLU: many windows hold equal maxima, zeros above all.
  x = jax.nn.relu(jnp.round(jax.random.normal(jax.random.key(0), (2, 6 * window, 4 * window, 3))))
  ours = lambda x: common.max_pool(x, window, window)
  flax_pool = lambda x: nnx.max_pool(x, (window, window), (window, window))
  np.testing.assert_array_equal(ours(x), flax_pool(x))
  weights = jnp.arange(1, ours(x).size + 1, dtype=jnp.float32).reshape(ours(x).shape)
  grads = [jax.grad(lambda x, f=f: jnp.sum(f(x) * weights))(x) for f in (ours, flax_pool)]
  np.testing.assert_array_equal(*grads)
  assert np.count_nonzero(grads[0]) == ours(x).size  # one element of each window


def test_tiled_max_pool_takes_strided_views_only_where_nothing_differentiates():
  x = jnp.zeros((2, 8, 8, 3))
  pool = lambda x: common.max_pool(x, 2, 2)
  evaluated = jax.jit(pool).lower(x).as_text()
  differentiated = jax.jit(jax.grad(lambda x: pool(x).sum())).lower(x).as_text()
  assert STRIDED_SLICE.search(evaluated) and 'reduce' not in evaluated
  assert 'reduce' in differentiated and not STRIDED_SLICE.search(differentiated)
