"""The train state: created under jit with a buffer per leaf, W and B by layer name."""

import jax.numpy as jnp
import numpy as np

from fajax.train_state import layer_kernels, with_kernels
from tests.fixtures import mnist_experiment


def test_kernels_by_layer_name_round_trip():
  params = {'conv1': {'kernel': jnp.ones((2, 2)), 'bias': jnp.zeros(2)},
            'block': {'conv': {'kernel': jnp.ones(3)}}}
  kernels = layer_kernels(params, ['conv1', 'block/conv'])
  assert set(kernels) == {'conv1', 'block/conv'}
  replaced = with_kernels(params, {'block/conv': jnp.full(3, 7.0)})
  np.testing.assert_array_equal(replaced['block']['conv']['kernel'], 7.0)
  np.testing.assert_array_equal(replaced['conv1']['kernel'], params['conv1']['kernel'])
  assert replaced['conv1']['bias'] is params['conv1']['bias']


def test_bp_state_holds_b_equal_to_w_in_buffers_of_its_own():
  state = mnist_experiment('bp').state
  assert state.feedback['fc2'].shape == (1, 84, 10)  # the one replica's axis first
  kernels = layer_kernels(state.params, state.feedback)
  assert list(state.feedback) == ['conv1', 'conv2', 'conv3', 'fc1', 'fc2']
  for layer, b in state.feedback.items():
    np.testing.assert_array_equal(b, kernels[layer])
    assert b.unsafe_buffer_pointer() != kernels[layer].unsafe_buffer_pointer()


def test_dfa_model_keeps_an_exact_twin_for_the_diagnostics():
  model = mnist_experiment('dfa').model
  assert [layer for layer, _ in model.hidden_shapes] == ['conv1', 'conv2', 'conv3', 'fc1']
  assert dict(model.hidden_shapes)['conv1'] == (28, 28, 6)
  assert 'matrices' in str(model.graphdef) and model.graphdef != model.exact_graphdef
