"""The train step with each rule: what happens to W and B over real optimizer steps."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fajax import methods
from fajax import training
from fajax.configs import cifar10_1
from fajax.configs import mnist
from fajax.datasets import cifar10
from fajax.datasets import epoch_batches
from fajax.datasets import mnist as mnist_data


def _setup(method, stacked=False, **overrides):
  config = mnist.get_config(method)
  config.update({**dict(optimizer='sgd', learning_rate=0.02, momentum=0.9, weight_decay=5e-3),
                 **overrides})
  optimizer, _ = training.create_optimizer(config, total_steps=100)
  method = methods.build(config, optimizer)
  model, state = training.create_train_state(config, mnist_data.SPEC, optimizer, method)
  step = jax.jit(functools.partial(training.train_steps if stacked else training.train_step,
                                   model=model, optimizer=optimizer, method=method))
  return model, state, step


def _batches(num_steps, batch_size=32):
  rng = np.random.default_rng(0)
  for _ in range(num_steps):
    images = rng.integers(0, 256, (batch_size, 28, 28, 1), dtype=np.uint8)
    yield images, rng.integers(0, 10, batch_size).astype(np.int32)


def test_fa_keeps_b_bit_identical_under_momentum_and_weight_decay():
  _, state, step = _setup('fa')
  b0 = jax.device_get(state.feedback)
  w0 = jax.device_get(training.layer_kernels(state.params, state.feedback))
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
  for layer in b0:
    np.testing.assert_array_equal(state.feedback[layer], b0[layer])
    assert not np.allclose(training.layer_kernels(state.params, state.feedback)[layer], w0[layer])


def test_bp_keeps_b_equal_to_w():
  _, state, step = _setup('bp')
  for images, labels in _batches(3):
    state, _ = step(state, images, labels)
    kernels = training.layer_kernels(state.params, state.feedback)
    for layer, b in state.feedback.items():
      np.testing.assert_array_equal(b, kernels[layer])


def test_usf_sn_norm_of_b_equals_norm_of_w_after_every_step():
  _, state, step = _setup('fa_usf_sn')
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
    kernels = training.layer_kernels(state.params, state.feedback)
    for layer, b in state.feedback.items():
      assert np.linalg.norm(b) == pytest.approx(float(np.linalg.norm(kernels[layer])), rel=1e-5)
      np.testing.assert_array_equal(np.sign(b), np.sign(kernels[layer]))


def test_usf_init_norm_of_b_stays_while_w_moves():
  _, state, step = _setup('fa_usf_init')
  initial = {k: float(np.linalg.norm(v)) for k, v in
             training.layer_kernels(state.params, state.feedback).items()}
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
  kernels = training.layer_kernels(state.params, state.feedback)
  for layer, b in state.feedback.items():
    assert np.linalg.norm(b) == pytest.approx(initial[layer], rel=1e-5)
    assert abs(np.linalg.norm(kernels[layer]) - initial[layer]) > 1e-4 * initial[layer]


def test_weight_decay_reaches_kernels_not_biases():
  config = mnist.get_config('bp')
  config.update(dict(learning_rate=1.0, momentum=0.0, weight_decay=0.5, lr_schedule='constant'))
  optimizer, _ = training.create_optimizer(config, total_steps=10)
  params = {'layer': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}}
  zero_grads = jax.tree.map(jnp.zeros_like, params)
  updates, _ = optimizer.update(zero_grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates['layer']['kernel'], -0.5)
  np.testing.assert_array_equal(updates['layer']['bias'], 0.0)


def test_train_step_learns_a_separable_batch():
  # Class k lights a 5×5 block at its own place: learnable through any of the rules.
  rng = np.random.default_rng(0)
  labels = np.arange(64, dtype=np.int32) % 10
  images = rng.integers(0, 40, (64, 28, 28, 1), dtype=np.uint8)
  for i, k in enumerate(labels):
    row, col = divmod(int(k), 4)
    images[i, 2 + 7 * row : 7 + 7 * row, 2 + 6 * col : 7 + 6 * col] = 255
  _, state, step = _setup('fa_usf_sn', weight_decay=0.0, learning_rate=0.05, lr_schedule='constant')
  losses = []
  for _ in range(40):
    state, metrics = step(state, images, labels)
    losses.append(float(metrics['train/loss']))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step) == 40


def test_epoch_batches_deterministic_per_seed_and_epoch():
  a = epoch_batches(1000, 32, seed=0, epoch=3)
  np.testing.assert_array_equal(a, epoch_batches(1000, 32, seed=0, epoch=3))
  assert not np.array_equal(a, epoch_batches(1000, 32, seed=1, epoch=3))
  assert not np.array_equal(a, epoch_batches(1000, 32, seed=0, epoch=4))
  assert a.shape == (31, 32)
  assert len(np.unique(a)) == a.size


def test_batch_manhattan_steps_by_the_sign_of_the_gradient():
  config = mnist.get_config('bp')
  config.update(dict(optimizer='sgd', learning_rate=0.1, momentum=0.0, weight_decay=0.0,
                     lr_schedule='constant', batch_manhattan=True))
  optimizer, _ = training.create_optimizer(config, total_steps=10)
  params = {'layer': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}}
  grads = {'layer': {'kernel': jnp.array([[3.0, -1e-4], [0.5, -7.0]]),
                     'bias': jnp.array([2.0, -2.0])}}
  updates, _ = optimizer.update(grads, optimizer.init(params), params)
  np.testing.assert_allclose(updates['layer']['kernel'], [[-0.1, 0.1], [-0.1, 0.1]], rtol=1e-6)
  np.testing.assert_allclose(updates['layer']['bias'], [-0.1, 0.1], rtol=1e-6)


@pytest.mark.parametrize('method', sorted(methods.METHODS))
def test_every_method_trains_a_step_to_finite_values(method):
  _, state, step = _setup(method)
  for images, labels in _batches(2):
    state, metrics = step(state, images, labels)
  assert np.isfinite(float(metrics['train/loss']))
  for tree in (state.params, state.feedback):
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(tree))


def test_stacked_steps_match_single_steps():
  _, state, step = _setup('bp')
  _, stacked_state, stacked = _setup('bp', stacked=True)
  images, labels = map(np.stack, zip(*_batches(4)))
  stacked_state, stacked_metrics = stacked(stacked_state, images, labels)
  losses = []
  for i in range(4):
    state, metrics = step(state, images[i], labels[i])
    losses.append(metrics['train/loss'])
  assert stacked_metrics['train/loss'].shape == (4,)
  np.testing.assert_allclose(stacked_metrics['train/loss'], losses, rtol=1e-5)
  assert int(stacked_state.step) == 4
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
               stacked_state.params, state.params)


@pytest.mark.parametrize('steps_per_call,diagnose,calls', [
    (1, True, [1] * 10),
    (4, True, [4, 4, 1, 1]),  # the diagnosed 10th step alone
    (4, False, [4, 4, 1, 1]),
    (3, False, [3, 3, 3, 1]),
    (5, False, [5, 5]),
    (5, True, [5, 1, 1, 1, 1, 1]),
])
def test_calls_fill_the_steps_up_to_a_stop(steps_per_call, diagnose, calls):
  step, made = 0, []
  while step < 10:
    made.append(training.steps_in_next_call(step, 10, steps_per_call, diagnose))
    step += made[-1]
  assert made == calls


@pytest.mark.parametrize('model,method', [('lenet5', 'dfa'), ('cifar_convnet_bn', 'fa')])
def test_bfloat16_compute_runs_every_product_in_bfloat16_and_keeps_the_state_float32(
    model, method):
  get_config, spec, raw_shape = {  # raw MNIST is 28×28, padded to 32×32 in preprocess
      'lenet5': (mnist.get_config, mnist_data.SPEC, (28, 28, 1)),
      'cifar_convnet_bn': (cifar10_1.get_config, cifar10.SPEC, (32, 32, 3))}[model]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, *raw_shape), dtype=np.uint8)
  labels = rng.integers(0, 10, 4).astype(np.int32)
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    config = get_config(method)
    config.update(model=model, compute_dtype=dtype)
    optimizer, _ = training.create_optimizer(config, total_steps=10)
    rule = methods.build(config, optimizer)
    structure, state = training.create_train_state(config, spec, optimizer, rule)
    step = jax.jit(functools.partial(training.train_step, model=structure, optimizer=optimizer,
                                     method=rule))
    # Every convolution and matmul of the lowered step: (operand types) -> result type.
    products = re.findall(r'stablehlo\.(?:convolution|dot_general).*: \((.*)\) -> (.*)',
                          step.lower(state, images, labels).as_text())
    assert products
    element_types = {t for operands, result in products
                     for t in re.findall(r'x([a-z][a-z0-9]*)>', operands + result)}
    assert element_types == {'bf16' if dtype == 'bfloat16' else 'f32'}
    new_state, metrics = step(state, images, labels)
    dtypes = lambda tree: [x.dtype for x in jax.tree.leaves(tree)]
    assert dtypes(new_state) == dtypes(state)
    losses[dtype] = float(metrics['train/loss'])
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=2e-2)
  assert losses['bfloat16'] != losses['float32']


@pytest.mark.parametrize('method', ['bp', 'fa_usf_sn'])
def test_donated_feedback_is_rewritten_in_place_not_copied(method):
  # XLA on CPU copied every B in and out of the step unless the new B depends on the backward
  # pass (training._after): two extra passes over the feedback weights per step.
  config = mnist.get_config(method)
  optimizer, _ = training.create_optimizer(config, total_steps=100)
  rule = methods.build(config, optimizer)
  model, state = training.create_train_state(config, mnist_data.SPEC, optimizer, rule)
  step = training.jit_train_step(model, optimizer, rule)
  images, labels = next(_batches(1))
  text = step.lower(state, images, labels).compile().as_text()
  entry = text[text.index('\nENTRY'):]
  feedback = set(re.findall(r'%(state_feedback\S*) = \S+ parameter\(\d+\)', entry))
  assert len(feedback) >= 4  # every B but the first layer's (no gradient flows past it)
  copied = set(re.findall(r'copy\(%(\S+?)\)', entry))
  assert not feedback & copied
