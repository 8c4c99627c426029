"""Forward-weight constraints: E/I and Const., alone and through real training steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fajax import constraints
from fajax import methods
from fajax.configs import mnist
from fajax.errors import ConfigError
from fajax.train_state import layer_kernels
from tests.fixtures import mnist_experiment
from tests.fixtures import single


def _weights():
  keys = jax.random.split(jax.random.key(0), 2)
  return {'a': jax.random.normal(keys[0], (5, 5, 3, 8)), 'b': jax.random.normal(keys[1], (20, 4))}


def test_fixed_signs_projects_to_the_initial_signs_with_a_floor():
  w0 = _weights()
  constraint = constraints.fixed_signs()
  state = constraint.init(w0)
  flipped = jax.tree.map(lambda w: -w, w0)
  projected = constraint.apply(flipped, state)
  for name in w0:
    np.testing.assert_array_equal(np.sign(projected[name]), np.sign(w0[name]))
    np.testing.assert_allclose(np.abs(projected[name]), constraints.SIGN_FLOOR)
  # Weights that kept their sign are left alone.
  jax.tree.map(np.testing.assert_array_equal, constraint.apply(w0, state), w0)


def test_fixed_signs_reflect_bounces_a_crossing_weight_back():
  w0 = _weights()
  constraint = constraints.fixed_signs(crossing='reflect')
  state = constraint.init(w0)
  # Each weight overshoots zero by its own size: reflected, it lands where it started.
  projected = constraint.apply(jax.tree.map(lambda w: -w, w0), state)
  jax.tree.map(np.testing.assert_array_equal, projected, w0)
  halved = constraint.apply(jax.tree.map(lambda w: 0.5 * w, w0), state)
  jax.tree.map(np.testing.assert_array_equal, halved, jax.tree.map(lambda w: 0.5 * w, w0))


def test_fixed_signs_leaves_free_layers_alone():
  w0 = _weights()
  constraint = constraints.fixed_signs(free_layers=('b',))
  flipped = jax.tree.map(lambda w: -w, w0)
  projected = constraint.apply(flipped, constraint.init(w0))
  np.testing.assert_array_equal(projected['b'], flipped['b'])
  np.testing.assert_allclose(np.abs(projected['a']), constraints.SIGN_FLOOR)
  with pytest.raises(ConfigError, match='sign_free_layers names fc9, not a layer of the model'):
    constraints.fixed_signs(free_layers=('fc9',)).init(w0)
  with pytest.raises(ConfigError, match="unknown sign_crossing 'wrap'"):
    constraints.fixed_signs(crossing='wrap')


def test_ei_config_switches_reach_the_constraint():
  config = mnist.get_config('fa_usf_init_ei')
  config.sign_crossing, config.sign_free_layers = 'reflect', ('b',)
  constraint = methods.build(config, optax.adam(1e-3)).constraint
  w0 = _weights()
  flipped = jax.tree.map(lambda w: -w, w0)
  projected = constraint.apply(flipped, constraint.init(w0))
  np.testing.assert_array_equal(projected['a'], w0['a'])  # reflected back
  np.testing.assert_array_equal(projected['b'], flipped['b'])  # free


def test_fixed_norm_restores_the_initial_norm():
  w0 = _weights()
  constraint = constraints.fixed_norm()
  state = constraint.init(w0)
  projected = constraint.apply(jax.tree.map(lambda w: 3 * w + 1, w0), state)
  for name in w0:
    expected = float(np.linalg.norm(w0[name]))
    assert np.linalg.norm(projected[name]) == pytest.approx(expected, rel=1e-6)


def _train(method, num_steps, **overrides):
  experiment = mnist_experiment(method, num_train_steps=num_steps, **overrides)
  rng = np.random.default_rng(0)
  state = experiment.state
  states = [single(state)]
  for _ in range(num_steps):
    images = rng.integers(0, 256, (1, 16, 28, 28, 1), dtype=np.uint8)
    labels = rng.integers(0, 10, (1, 16)).astype(np.int32)
    state, _ = experiment.train_step(state, images, labels)
    states.append(single(state))
  return states


def test_ei_no_weight_changes_sign_over_100_steps_while_biases_move():
  states = _train('fa_usf_init_ei', 100, learning_rate=0.01)
  first, last = states[0], states[-1]
  w0 = layer_kernels(first.params, first.feedback)
  for state in states:
    for layer, w in layer_kernels(state.params, state.feedback).items():
      assert np.all(np.sign(w) == np.where(w0[layer] < 0, -1, 1)), f'{layer} changed sign'
  floored = sum(int(np.sum(np.abs(w) <= 2 * constraints.SIGN_FLOOR))
                for w in layer_kernels(last.params, last.feedback).values())
  assert floored > 0  # the constraint was active: some weights were pushed to the floor
  biases_moved = [not np.allclose(last.params[l]['bias'], first.params[l]['bias'])
                  for l in last.params]
  assert all(biases_moved)


@pytest.mark.parametrize('method', ['bp_const', 'fa_usf_const', 'fa_usf_const_ei'])
def test_const_every_layer_keeps_its_initial_norm_after_every_step(method):
  states = _train(method, 20, learning_rate=0.01)
  initial = {layer: np.linalg.norm(w) for layer, w in
             layer_kernels(states[0].params, states[0].feedback).items()}
  for state in states[1:]:
    for layer, w in layer_kernels(state.params, state.feedback).items():
      assert np.linalg.norm(w) == pytest.approx(initial[layer], rel=1e-5)
  w_first = layer_kernels(states[0].params, states[0].feedback)
  w_last = layer_kernels(states[-1].params, states[-1].feedback)
  assert not np.allclose(w_first['conv1'], w_last['conv1'])  # the direction moved


def test_constraints_compose_in_order():
  w0 = _weights()
  both = constraints.chain(constraints.fixed_signs(), constraints.fixed_norm())
  state = both.init(w0)
  moved = jax.tree.map(lambda w: jnp.where(w > 0.5, -w, 2 * w), w0)
  projected = both.apply(moved, state)
  for name in w0:
    np.testing.assert_array_equal(np.sign(projected[name]), np.sign(w0[name]))
    expected = float(np.linalg.norm(w0[name]))
    assert np.linalg.norm(projected[name]) == pytest.approx(expected, rel=1e-6)
