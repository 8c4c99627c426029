"""Feedback rules against their definitions (the docstrings of `fajax/rules.py`)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax import rules
from fajax.errors import ConfigError
from tests.fixtures import TinyMLP, single, tiny_config, tiny_data


def _weights(seed=0):
  keys = jax.random.split(jax.random.key(seed), 2)
  return {
      'conv': 0.1 * jax.random.normal(keys[0], (5, 5, 16, 32)),
      'fc': 0.05 * jax.random.normal(keys[1], (400, 120)),
  }


def _random_feedback(seed=1):
  return _weights(seed)


def _angle_deg(a, b):
  a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
  cosine = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
  return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))


def _apply(rule, weights, feedback):
  state = rule.init(weights)
  return rule.update(feedback, state, weights)


def test_copy_weights_is_backprop():
  w = _weights()
  b, _ = _apply(rules.copy_weights(), w, _random_feedback())
  jax.tree.map(np.testing.assert_array_equal, b, w)


def test_copy_weights_of_makes_only_the_named_layers_exact():
  w, b0 = _weights(), _random_feedback()
  b, _ = _apply(rules.chain(rules.fixed(), rules.copy_weights_of(('fc',))), w, b0)
  np.testing.assert_array_equal(b['fc'], w['fc'])
  np.testing.assert_array_equal(b['conv'], b0['conv'])
  with pytest.raises(ConfigError, match='exact_layers names fc9, not a feedback layer'):
    rules.copy_weights_of(('fc9',)).init(w)


def test_fixed_keeps_b():
  w, b0 = _weights(), _random_feedback()
  b, _ = _apply(rules.fixed(), w, b0)
  jax.tree.map(np.testing.assert_array_equal, b, b0)


@pytest.mark.parametrize('scale', [rules.scale_to_initial_norm, rules.scale_to_weight_norm])
def test_usf_angle_is_arccos_of_mean_abs_over_rms(scale):
  w = _weights()
  b, _ = _apply(rules.chain(rules.sign_of_weights(), scale()), w, _random_feedback())
  for name in w:
    wn = np.asarray(w[name])
    expected = np.degrees(np.arccos(np.mean(np.abs(wn)) / np.sqrt(np.mean(wn**2))))
    assert _angle_deg(b[name], wn) == pytest.approx(expected, abs=1e-3)
    assert 36 < expected < 38  # the Gaussian value, arccos(sqrt(2/pi))
    np.testing.assert_array_equal(np.sign(b[name]), np.sign(wn))


def test_usf_init_matches_definition_and_keeps_the_initial_norm():
  w0 = _weights()
  rule = rules.chain(rules.sign_of_weights(), rules.scale_to_initial_norm())
  state = rule.init(w0)
  b, state = rule.update(_random_feedback(), state, w0)
  w = w0
  for step in range(5):
    w = jax.tree.map(lambda x, s=step: 3.0 * x + 0.01 * (s + 1), w)  # norm and signs change
    b, state = rule.update(b, state, w)
    for name in w:
      n = w[name].size
      expected = np.sign(w[name]) * np.linalg.norm(w0[name]) / np.sqrt(n)
      np.testing.assert_allclose(b[name], expected, rtol=1e-5)
      assert np.linalg.norm(b[name]) == pytest.approx(float(np.linalg.norm(w0[name])), rel=1e-5)
      assert np.linalg.norm(w[name]) > 2 * np.linalg.norm(w0[name])


def test_usf_sn_norm_tracks_current_weights():
  rule = rules.chain(rules.sign_of_weights(), rules.scale_to_weight_norm())
  w = _weights()
  state = rule.init(w)
  b = _random_feedback()
  for step in range(5):
    w = jax.tree.map(lambda x, s=step: x * (1.5 + s), w)
    b, state = rule.update(b, state, w)
    for name in w:
      assert np.linalg.norm(b[name]) == pytest.approx(float(np.linalg.norm(w[name])), rel=1e-5)
      expected = np.sign(w[name]) * np.linalg.norm(w[name]) / np.sqrt(w[name].size)
      np.testing.assert_allclose(b[name], expected, rtol=1e-5)


def test_per_output_norm_matches_each_filter():
  w = _weights()
  rule = rules.chain(rules.sign_of_weights(), rules.scale_to_weight_norm(per_output=True))
  b, _ = _apply(rule, w, _random_feedback())
  for name in w:
    axes = tuple(range(w[name].ndim - 1))
    np.testing.assert_allclose(
        np.linalg.norm(np.reshape(b[name], (-1, b[name].shape[-1])), axis=0),
        np.sqrt(np.sum(np.square(w[name]), axis=axes)),
        rtol=1e-5,
    )


def test_chain_applies_in_order_and_keeps_each_state():
  w = _weights()
  rule = rules.chain(rules.copy_weights(), rules.scale_to_initial_norm())
  state = rule.init(w)
  assert len(state) == 2
  doubled = jax.tree.map(lambda x: 2 * x, w)
  b, _ = rule.update(_random_feedback(), state, doubled)
  jax.tree.map(lambda b_, w_: np.testing.assert_allclose(b_, w_, rtol=1e-5), b, w)


def test_rules_run_under_jit():
  w = _weights()
  rule = rules.chain(rules.sign_of_weights(), rules.scale_to_initial_norm())
  state = jax.jit(rule.init)(w)
  b, _ = jax.jit(rule.update)(_random_feedback(), state, w)
  b_eager, _ = _apply(rule, w, _random_feedback())
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6), b, b_eager)


def test_zero_feedback_is_left_zero_not_nan():
  w = _weights()
  zeros = jax.tree.map(jnp.zeros_like, w)
  b, _ = _apply(rules.scale_to_weight_norm(), w, zeros)
  jax.tree.map(lambda x: np.testing.assert_array_equal(x, 0), b)


def _angle_of(b, w):
  return _angle_deg(np.asarray(b), np.asarray(w))


def test_bp_noise_mean_tends_to_w_and_angle_is_arctan_sigma():
  sigma = 0.75
  w = _weights()
  rule = rules.chain(rules.copy_weights(), rules.add_weight_scaled_noise(sigma, seed=0))
  state = rule.init(w)
  update = jax.jit(rule.update)
  b = w
  total = jax.tree.map(jnp.zeros_like, w)
  draws = []
  for _ in range(400):
    b, state = update(b, state, w)
    total = jax.tree.map(jnp.add, total, b)
    draws.append(np.asarray(b['fc']))
  mean = jax.tree.map(lambda t: t / 400, total)
  for name in w:
    # The noise averages out: relative error of the mean ~ σ/√400.
    relative = np.linalg.norm(mean[name] - w[name]) / np.linalg.norm(w[name])
    assert relative < 2 * sigma / np.sqrt(400)
    assert _angle_of(b[name], w[name]) == pytest.approx(np.degrees(np.arctan(sigma)), abs=1.0)
  assert not np.array_equal(draws[0], draws[1])  # fresh noise every step


def test_bp_alignment_has_bps_direction_and_the_initial_norm():
  w0 = _weights()
  rule = rules.chain(rules.copy_weights(), rules.scale_to_initial_norm())
  state = rule.init(w0)
  w = jax.tree.map(lambda x: 2.5 * x + 0.01, w0)
  b, _ = rule.update(_random_feedback(), state, w)
  for name in w:
    assert _angle_of(b[name], w[name]) < 1e-2
    np.testing.assert_allclose(b[name] / np.linalg.norm(b[name]),
                               w[name] / np.linalg.norm(w[name]), rtol=1e-5, atol=1e-7)
    assert np.linalg.norm(b[name]) == pytest.approx(float(np.linalg.norm(w0[name])), rel=1e-5)


@pytest.mark.parametrize('redraw', [True, False])
def test_brsf_redraws_magnitudes_and_frsf_keeps_them(redraw):
  w = _weights()
  rule = rules.random_magnitude_signs(redraw=redraw, seed=3)
  state = rule.init(w)
  b1, state = rule.update(_random_feedback(), state, w)
  b2, state = rule.update(b1, state, w)
  for name in w:
    np.testing.assert_array_equal(np.sign(b1[name]), np.sign(w[name]))
    assert np.sqrt(np.mean(np.square(b1[name]))) == pytest.approx(
        float(np.sqrt(np.mean(np.square(w[name])))), rel=0.05)
    assert np.array_equal(b1[name], b2[name]) != redraw


def test_kolen_pollack_difference_decays_geometrically_under_weight_decay():
  import optax  # pylint: disable=g-import-not-at-top

  lr, decay = 0.1, 0.05
  optimizer = optax.chain(optax.add_decayed_weights(decay), optax.sgd(lr))
  w, b = _weights(0), _random_feedback(1)
  rule = rules.kolen_pollack(optimizer)
  rule_state = rule.init(w)
  opt_state = optimizer.init(w)
  gap = [np.sqrt(sum(np.sum(np.square(w[k] - b[k])) for k in w))]
  for step in range(30):
    grads = jax.tree.map(lambda x, s=step: jnp.cos(x * (s + 1)), w)  # any gradient sequence
    updates, opt_state = optimizer.update(grads, opt_state, w)
    w = optax.apply_updates(w, updates)
    b, rule_state = rule.update(b, rule_state, w, grads)
    gap.append(np.sqrt(sum(np.sum(np.square(w[k] - b[k])) for k in w)))
  ratios = np.array(gap[1:]) / np.array(gap[:-1])
  np.testing.assert_allclose(ratios, 1 - lr * decay, rtol=1e-4)


def test_weight_mirror_aligns_b_with_w_from_a_random_start():
  w = _weights()
  rule = rules.weight_mirror(learning_rate=0.05, decay=1.0, noise_std=1.0, num_samples=64, seed=0)
  state = rule.init(w)
  update = jax.jit(rule.update)
  b = _random_feedback()
  start = {name: _angle_of(b[name], w[name]) for name in w}
  for _ in range(200):
    b, state = update(b, state, w)
  for name in w:
    assert start[name] > 80
    assert _angle_of(b[name], w[name]) < 30


def test_exact_layers_keep_b_equal_to_w_while_training():
  experiment = fajax.build(tiny_config('fa', exact_layers=('fc3',)),
                           model=TinyMLP(rngs=nnx.Rngs(params=0, feedback=1)), data=tiny_data())
  first = single(experiment.state)
  state = experiment.state
  for images, labels in itertools.islice(experiment.train_batches(0), 3):
    state, _ = experiment.train_step(state, *experiment.put_batch(images, labels))
  last = single(state)
  assert not np.allclose(last.params['fc3']['kernel'], first.params['fc3']['kernel'])
  np.testing.assert_array_equal(last.feedback['fc3'], last.params['fc3']['kernel'])
  np.testing.assert_array_equal(last.feedback['fc2'], first.feedback['fc2'])  # FA elsewhere
