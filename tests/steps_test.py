"""The train step with each rule: what happens to W and B over real optimizer steps."""

import functools
import re

import jax
import numpy as np
import pytest

from fajax import datasets
from fajax import methods
from fajax.datasets import cifar10
from fajax.train_state import layer_kernels
from tests.fixtures import mnist_experiment


def _setup(method, stacked=False, **overrides):
  """The MNIST experiment of `method` under SGD with momentum and weight decay, and its step."""
  experiment = mnist_experiment(method, **{
      **dict(optimizer='sgd', learning_rate=0.02, momentum=0.9, weight_decay=5e-3,
             num_train_steps=100), **overrides})
  return experiment, experiment.state, (
      experiment.train_steps if stacked else experiment.train_step)


def _batches(num_steps, batch_size=32):
  """Random MNIST-shaped batches of the one replica: [1, batch, ...]."""
  rng = np.random.default_rng(0)
  for _ in range(num_steps):
    images = rng.integers(0, 256, (1, batch_size, 28, 28, 1), dtype=np.uint8)
    yield images, rng.integers(0, 10, (1, batch_size)).astype(np.int32)


def test_fa_keeps_b_bit_identical_under_momentum_and_weight_decay():
  _, state, step = _setup('fa')
  b0 = jax.device_get(state.feedback)
  w0 = jax.device_get(layer_kernels(state.params, state.feedback))
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
  for layer in b0:
    np.testing.assert_array_equal(state.feedback[layer], b0[layer])
    assert not np.allclose(layer_kernels(state.params, state.feedback)[layer], w0[layer])


def test_bp_keeps_b_equal_to_w():
  _, state, step = _setup('bp')
  for images, labels in _batches(3):
    state, _ = step(state, images, labels)
    kernels = layer_kernels(state.params, state.feedback)
    for layer, b in state.feedback.items():
      np.testing.assert_array_equal(b, kernels[layer])


def test_usf_sn_norm_of_b_equals_norm_of_w_after_every_step():
  _, state, step = _setup('fa_usf_sn')
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
    kernels = layer_kernels(state.params, state.feedback)
    for layer, b in state.feedback.items():
      assert np.linalg.norm(b) == pytest.approx(float(np.linalg.norm(kernels[layer])), rel=1e-5)
      np.testing.assert_array_equal(np.sign(b), np.sign(kernels[layer]))


def test_usf_init_norm_of_b_stays_while_w_moves():
  _, state, step = _setup('fa_usf_init')
  initial = {k: float(np.linalg.norm(v)) for k, v in
             layer_kernels(state.params, state.feedback).items()}
  for images, labels in _batches(5):
    state, _ = step(state, images, labels)
  kernels = layer_kernels(state.params, state.feedback)
  for layer, b in state.feedback.items():
    assert np.linalg.norm(b) == pytest.approx(initial[layer], rel=1e-5)
    assert abs(np.linalg.norm(kernels[layer]) - initial[layer]) > 1e-4 * initial[layer]


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
    state, metrics = step(state, images[None], labels[None])
    losses.append(float(metrics['train/loss'][0]))
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step[0]) == 40


@pytest.mark.parametrize('method', sorted(methods.METHODS))
def test_every_method_trains_a_step_to_finite_values(method):
  _, state, step = _setup(method)
  for images, labels in _batches(2):
    state, metrics = step(state, images, labels)
  assert np.isfinite(float(metrics['train/loss'][0]))
  assert int(state.diverged_step[0]) == -1
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
  assert stacked_metrics['train/loss'].shape == (4, 1)
  np.testing.assert_allclose(stacked_metrics['train/loss'], losses, rtol=1e-5)
  assert int(stacked_state.step[0]) == 4
  jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6),
               stacked_state.params, state.params)


@pytest.mark.parametrize('model,method', [('lenet5', 'dfa'), ('cifar_convnet_bn', 'fa')])
def test_bfloat16_compute_runs_every_product_in_bfloat16_and_keeps_the_state_float32(
    model, method):
  data, raw_shape = {  # raw MNIST is 28×28, padded to 32×32 in preprocess
      'lenet5': (None, (28, 28, 1)),
      'cifar_convnet_bn': (datasets.InMemoryDataset.random(cifar10.SPEC, (32, 32, 3), 64, 8), (32, 32, 3))}[model]
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (1, 4, *raw_shape), dtype=np.uint8)
  labels = rng.integers(0, 10, (1, 4)).astype(np.int32)
  losses = {}
  for dtype in ('float32', 'bfloat16'):
    experiment = mnist_experiment(method, data=data, model=model, compute_dtype=dtype,
                                  num_train_steps=10)
    state, step = experiment.state, experiment.train_step
    # Every convolution and matmul of the lowered step: (operand types) -> result type.
    products = re.findall(r'stablehlo\.(?:convolution|dot_general).*: \((.*)\) -> (.*)',
                          step.lower(state, images, labels).as_text())
    assert products
    element_types = {t for operands, result in products
                     for t in re.findall(r'x([a-z][a-z0-9]*)>', operands + result)}
    assert element_types == {'bf16' if dtype == 'bfloat16' else 'f32'}
    dtypes = lambda tree: [x.dtype for x in jax.tree.leaves(tree)]
    state_dtypes = dtypes(state)
    new_state, metrics = step(state, images, labels)
    assert dtypes(new_state) == state_dtypes
    losses[dtype] = float(metrics['train/loss'][0])
  assert losses['bfloat16'] == pytest.approx(losses['float32'], rel=2e-2)
  assert losses['bfloat16'] != losses['float32']


@pytest.mark.parametrize('method', ['bp', 'fa_usf_sn'])
def test_donated_feedback_is_rewritten_in_place_not_copied(method):
  # XLA on CPU copied every B in and out of the step unless the new B depends on the backward
  # pass (steps._after): two extra passes over the feedback weights per step.
  experiment = mnist_experiment(method)
  images, labels = next(_batches(1))
  text = experiment.train_step.lower(experiment.state, images, labels).compile().as_text()
  entry = text[text.index('\nENTRY'):]
  feedback = set(re.findall(r'%(states_feedback\S*) = \S+ parameter\(\d+\)', entry))
  assert len(feedback) >= 4  # every B but the first layer's (no gradient flows past it)
  copied = set(re.findall(r'copy\(%(\S+?)\)', entry))
  assert not feedback & copied


def _same_batch_for(replicas, batch_size=16):
  images, labels = next(_batches(1, batch_size))
  return np.repeat(images, replicas, axis=0), np.repeat(labels, replicas, axis=0)


def test_replicas_take_their_own_learning_rate_and_weight_decay():
  # Four replicas of one seed: the same W and batch, so their first SGD updates differ only by
  # their hyper-parameters: ΔW = -lr·(g + wd·W) on kernels, -lr·g on biases.
  experiment = mnist_experiment('bp', optimizer='sgd', momentum=0.0, lr_schedule='constant',
                                sweep=dict(learning_rate=(0.01, 0.03), weight_decay=(0.0, 0.5)))
  assert [(r.seed, r.hyperparams['learning_rate'], r.hyperparams['weight_decay'])
          for r in experiment.replicas] == [(0, 0.01, 0.0), (0, 0.01, 0.5), (0, 0.03, 0.0),
                                            (0, 0.03, 0.5)]
  before = jax.device_get(experiment.state.params)
  state, _ = experiment.train_step(experiment.state, *_same_batch_for(4))
  delta = jax.tree.map(lambda new, old: np.asarray(new, np.float64) - old,
                       jax.device_get(state.params), before)
  w, b = before['fc1']['kernel'][0], delta['fc1']['bias']
  # ΔW is read as a difference of float32 weights of ≈ 0.1: about 1e-8 of rounding.
  close = functools.partial(np.testing.assert_allclose, rtol=1e-3, atol=3e-8)
  close(delta['fc1']['kernel'][2], 3 * delta['fc1']['kernel'][0])
  close(delta['fc1']['kernel'][1] - delta['fc1']['kernel'][0], -0.01 * 0.5 * w)
  close(delta['fc1']['kernel'][3] - delta['fc1']['kernel'][2], -0.03 * 0.5 * w)
  close(b[1], b[0])  # no decay on biases
  close(b[2], 3 * b[0])


def test_a_diverging_replica_is_frozen_and_the_others_go_on():
  experiment = mnist_experiment('fa', optimizer='sgd', lr_schedule='constant',
                                sweep=dict(learning_rate=(0.01, 1e9)))
  state, history = experiment.state, []
  for _ in range(4):
    state, _ = experiment.train_step(state, *_same_batch_for(2))
    history.append(jax.device_get(state))
  diverged_at = int(history[-1].diverged_step[1])
  assert int(history[-1].diverged_step[0]) == -1 and 1 <= diverged_at <= 3
  assert experiment.health_checks[int(history[-1].diverged_check[1])]
  frozen = history[diverged_at - 1]  # the state after the step that diverged: the one before
  for later in history[diverged_at - 1:]:
    np.testing.assert_array_equal(later.params['conv1']['kernel'][1],
                                  frozen.params['conv1']['kernel'][1])
    assert int(later.step[1]) == int(later.step[0])  # the step counter goes on
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(history[-1].params))
  assert not np.array_equal(history[-1].params['conv1']['kernel'][0],
                            history[-2].params['conv1']['kernel'][0])
