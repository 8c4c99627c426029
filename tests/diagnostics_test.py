"""Alignment diagnostics on known cases, through the real train step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fajax import diagnostics
from fajax.train_state import layer_kernels
from tests.fixtures import mnist_experiment
from tests.fixtures import single


def _diagnosed_step(method_name, num_steps=1):
  """(state before, state after, metrics) of a diagnosed step after `num_steps` - 1 plain ones,
  and the experiment with its batch."""
  experiment = mnist_experiment(method_name, num_train_steps=100)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (16, 28, 28, 1), dtype=np.uint8)
  labels = rng.integers(0, 10, 16).astype(np.int32)
  state = experiment.state
  for _ in range(num_steps - 1):
    state, _ = experiment.train_step(state, images[None], labels[None])
  before = jax.device_get(state)  # the step donates `state`
  after, metrics = experiment.diagnose_step(state, images[None], labels[None])
  return single(before), single(after), single(metrics), (experiment, images, labels)


LAYERS = ('conv1', 'conv2', 'conv3', 'fc1', 'fc2')
HIDDEN = ('conv1', 'conv2', 'conv3', 'fc1')


def test_bp_is_aligned_everywhere():
  _, _, metrics, _ = _diagnosed_step('bp', num_steps=3)
  for layer in LAYERS:
    assert metrics[f'align/{layer}/angle_wb_deg'] == pytest.approx(0, abs=0.05)
    assert metrics[f'align/{layer}/norm_ratio'] == pytest.approx(1, abs=1e-6)
    assert metrics[f'align/{layer}/angle_update_deg'] == pytest.approx(0, abs=0.05)
  for layer in HIDDEN:
    assert metrics[f'align/{layer}/angle_delta_deg'] == pytest.approx(0, abs=0.05)


def test_usf_sn_angle_is_the_sign_angle_and_ratio_one():
  before, _, metrics, _ = _diagnosed_step('fa_usf_sn', num_steps=3)
  kernels = layer_kernels(before.params, before.feedback)
  for layer in LAYERS:
    w = np.asarray(kernels[layer], np.float64)
    expected = np.degrees(np.arccos(np.mean(np.abs(w)) / np.sqrt(np.mean(w**2))))
    assert metrics[f'align/{layer}/angle_wb_deg'] == pytest.approx(expected, abs=0.05)
    assert metrics[f'align/{layer}/norm_ratio'] == pytest.approx(1, abs=1e-5)
  # The output layer's update is exact; the hidden ones are not.
  assert metrics['align/fc2/angle_update_deg'] < 0.1
  assert metrics['align/conv1/angle_delta_deg'] > 5


def test_fa_starts_near_90_degrees():
  _, _, metrics, _ = _diagnosed_step('fa')
  for layer in LAYERS:
    assert 80 < metrics[f'align/{layer}/angle_wb_deg'] < 100
  for layer in HIDDEN:
    assert 60 < metrics[f'align/{layer}/angle_delta_deg'] < 120


def test_dfa_measured_against_exact_backprop():
  _, _, metrics, _ = _diagnosed_step('dfa')
  assert metrics['align/conv1/angle_delta_deg'] > 45
  assert metrics['align/fc2/angle_update_deg'] < 0.1


def test_diagnosing_does_not_change_the_step():
  before, after, _, (experiment, images, labels) = _diagnosed_step('fa_usf_init', num_steps=2)
  stacked_before = jax.tree.map(lambda x: jax.device_put(x[None]), before)
  plain, _ = experiment.train_step(stacked_before, images[None], labels[None])
  # Bit for bit under XLA's default emitters; the suite's older loop emitters (conftest) may
  # fuse the two programs differently, by an ulp. A changed update would differ far more.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0),
               single(plain), after)


def test_health_names_the_first_nonfinite_value_in_forward_then_backward_order():
  ok, bad = jnp.ones((2, 2)), jnp.array([[1.0, jnp.nan], [0.0, 1.0]])
  checks = diagnostics.health_checks(['conv1', 'fc1'], ['conv1', 'fc2'])
  finite, overflowed = jnp.array(True), jnp.array(False)
  code = lambda forward, **t: int(diagnostics.first_nonfinite(
      forward, t.get('loss', jnp.array(1.0)), {'conv1': ok, 'fc2': t.get('grad', ok)},
      {'conv1': ok, 'fc2': ok}, {'conv1': ok, 'fc2': t.get('b', ok)}))
  assert code([finite, finite, finite]) == -1
  assert checks[code([finite, overflowed, overflowed], loss=jnp.array(jnp.inf))] == (
      'the output of fc1')
  assert checks[code([finite, finite, finite], grad=bad)] == 'the gradient of fc2'
  assert checks[code([finite, finite, finite], b=bad)] == 'the feedback weights of fc2'


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_all_finite_flags_exactly_nan_and_inf(dtype):
  huge = float(jnp.finfo(dtype).max)
  check = jax.jit(diagnostics.all_finite)
  assert bool(check(jnp.full((1000, 3), huge, dtype)))  # a sum of these would overflow
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    x = jnp.zeros((1000, 3), dtype).at[517, 2].set(bad)
    assert not bool(check(x)) and not bool(diagnostics.all_finite(x))
