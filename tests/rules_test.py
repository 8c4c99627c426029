"""Feedback rules against their definitions (SPEC §2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fajax import rules


def _weights(seed=0):
  keys = jax.random.split(jax.random.key(seed), 2)
  return {
      'conv': 0.1 * jax.random.normal(keys[0], (5, 5, 16, 32)),
      'fc': 0.05 * jax.random.normal(keys[1], (400, 120)),
  }


def _random_feedback(seed=1):
  return _weights(seed)


def _angle_deg(a, b):
  a, b = a.ravel(), b.ravel()
  return np.degrees(np.arccos(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))))


def _apply(rule, weights, feedback):
  state = rule.init(weights)
  return rule.update(feedback, state, weights)


def test_copy_weights_is_backprop():
  w = _weights()
  b, _ = _apply(rules.copy_weights(), w, _random_feedback())
  jax.tree.map(np.testing.assert_array_equal, b, w)


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
