"""W's optimizer: weight decay on kernels only, Batch Manhattan, the schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fajax.configs import mnist
from fajax.optimizers import create_optimizer, set_hyperparams

PARAMS = {'layer': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}}


def test_weight_decay_reaches_kernels_not_biases():
  config = mnist.get_config('bp')
  config.update(dict(optimizer='sgd', learning_rate=1.0, momentum=0.0, weight_decay=0.5,
                     lr_schedule='constant'))
  optimizer, _ = create_optimizer(config, total_steps=10)
  zero_grads = jax.tree.map(jnp.zeros_like, PARAMS)
  updates, _ = optimizer.update(zero_grads, optimizer.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates['layer']['kernel'], -0.5)
  np.testing.assert_array_equal(updates['layer']['bias'], 0.0)


def test_batch_manhattan_steps_by_the_sign_of_the_gradient():
  config = mnist.get_config('bp')
  config.update(dict(optimizer='sgd', learning_rate=0.1, momentum=0.0, weight_decay=0.0,
                     lr_schedule='constant', batch_manhattan=True))
  optimizer, _ = create_optimizer(config, total_steps=10)
  grads = {'layer': {'kernel': jnp.array([[3.0, -1e-4], [0.5, -7.0]]),
                     'bias': jnp.array([2.0, -2.0])}}
  updates, _ = optimizer.update(grads, optimizer.init(PARAMS), PARAMS)
  np.testing.assert_allclose(updates['layer']['kernel'], [[-0.1, 0.1], [-0.1, 0.1]], rtol=1e-6)
  np.testing.assert_allclose(updates['layer']['bias'], [-0.1, 0.1], rtol=1e-6)


def test_cosine_schedule_decays_to_zero_after_a_linear_warmup():
  config = mnist.get_config('bp')
  config.update(dict(learning_rate=0.4, lr_schedule='cosine', warmup_steps=10))
  _, schedule = create_optimizer(config, total_steps=110)
  assert float(schedule(0, 0.4)) == 0.0
  assert float(schedule(5, 0.4)) == pytest.approx(0.2)
  assert float(schedule(10, 0.4)) == pytest.approx(0.4)
  assert float(schedule(60, 0.4)) == pytest.approx(0.2, rel=1e-5)
  assert float(schedule(110, 0.4)) == pytest.approx(0.0, abs=1e-7)
  assert float(schedule(60, 0.1)) == pytest.approx(0.05, rel=1e-5)  # a replica's own peak


def test_hyperparameters_are_state_values_set_per_replica():
  config = mnist.get_config('bp')
  config.update(dict(optimizer='sgd', momentum=0.0, lr_schedule='constant', weight_decay=0.0))
  optimizer, _ = create_optimizer(config, total_steps=10)
  state = set_hyperparams(optimizer.init(PARAMS), {'learning_rate': 0.5, 'weight_decay': 0.25})
  updates, _ = optimizer.update(jax.tree.map(jnp.ones_like, PARAMS), state, PARAMS)
  np.testing.assert_allclose(updates['layer']['kernel'], -0.5 * (1 + 0.25))
  np.testing.assert_allclose(updates['layer']['bias'], -0.5)
