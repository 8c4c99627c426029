"""The train state: created under jit with a buffer per leaf, W and B by layer name, also
for layers at paths with list indices (nnx.List, nnx.Sequential)."""

import functools
import operator
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax import train_state
from fajax.train_state import layer_kernels, with_kernels
from tests.fixtures import mnist_experiment, single, tiny_config, tiny_data


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


def test_kernels_of_layers_at_list_indices_are_found_by_name_and_put_back_at_int_keys():
  params = {'blocks': {0: {'kernel': jnp.ones(2)}, 1: {'dense': {'kernel': jnp.ones(3)}}},
            'head': {'kernel': jnp.ones(4)}}
  kernels = layer_kernels(params, ['blocks/1/dense', 'head'])
  np.testing.assert_array_equal(kernels['blocks/1/dense'], params['blocks'][1]['dense']['kernel'])
  replaced = with_kernels(params, {'blocks/0': jnp.full(2, 7.0)})
  assert list(replaced['blocks']) == [0, 1]  # NNX's own keys, which merge back into the module
  np.testing.assert_array_equal(replaced['blocks'][0]['kernel'], 7.0)
  assert replaced['blocks'][1]['dense']['kernel'] is params['blocks'][1]['dense']['kernel']


# A caller's model whose layers sit in an nnx.List and an nnx.Sequential.


class Residual(nnx.Module):

  def __init__(self, features, rngs):
    self.dense = nnx.Linear(features, features, rngs=rngs)

  def __call__(self, x):
    return x + self.dense(x)


class ListedMLP(nnx.Module):
  """Plain nnx layers for tiny_data at paths with list indices: an nnx.List of a layer and a
  nested module, then an nnx.Sequential; DFA taps on the list's entries."""

  def __init__(self, rngs):
    self.blocks = nnx.List([nnx.Linear(64, 16, rngs=rngs), Residual(16, rngs)])
    self.head = nnx.Sequential(nnx.Linear(16, 12, rngs=rngs), nnx.relu,
                               nnx.Linear(12, 3, rngs=rngs))
    self.direct = fajax.DirectFeedback()

  def __call__(self, x):
    path = self.direct.path(x.shape[0])
    x = x.reshape(x.shape[0], -1)
    for index, block in enumerate(self.blocks):
      x = path.activate(f'blocks/{index}', block(x), nnx.relu)
    return path.finish(self.head(x))


LISTED_LAYERS = {  # name → the NNX path of the layer
    'blocks/0': ('blocks', 0),
    'blocks/1/dense': ('blocks', 1, 'dense'),
    'head/layers/0': ('head', 'layers', 0),
    'head/layers/2': ('head', 'layers', 2),
}


def _listed_model():
  return fajax.to_feedback(ListedMLP(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))


def _kernel(params, layer):
  return functools.reduce(operator.getitem, LISTED_LAYERS[layer], params)['kernel']


def _train(experiment, num_steps):
  """The state after `num_steps` steps, the first diagnosed, and that step's metrics."""
  batches = experiment.train_batches(start_step=0)
  state, diagnosed = experiment.diagnose_step(
      experiment.state, *experiment.put_batch(*next(batches)))
  for _ in range(num_steps - 1):
    state, metrics = experiment.train_step(state, *experiment.put_batch(*next(batches)))
    assert np.isfinite(single(metrics)['train/loss'])
  return state, single(diagnosed)


@pytest.mark.parametrize('method,matrices', [('fa', []), ('dfa', ['blocks/0_from_output'])])
def test_layers_in_lists_train_under_names_of_their_paths(method, matrices):
  model = _listed_model()
  experiment = fajax.build(tiny_config(method), model=model, data=tiny_data())
  start = single(experiment.state)
  assert sorted(start.feedback) == sorted(LISTED_LAYERS)
  np.testing.assert_array_equal(start.feedback['blocks/1/dense'],
                                model.blocks[1].dense.feedback[...])
  assert list(start.error_feedback.get('direct', {}).get('matrices', {})) == matrices
  state, diagnosed = _train(experiment, 3)
  end = single(state)
  assert np.isfinite(diagnosed['train/loss'])
  for w_start, w_end in zip(jax.tree.leaves(start.params), jax.tree.leaves(end.params)):
    assert not np.allclose(w_end, w_start)
  for layer in LISTED_LAYERS:
    np.testing.assert_array_equal(end.feedback[layer], start.feedback[layer])  # B stays
    assert 0 < diagnosed[f'align/{layer}/angle_wb_deg'] < 180
  # The output layer's gradient is backprop's under FA and DFA; a hidden layer's is not.
  assert diagnosed['align/head/layers/2/angle_update_deg'] < 0.5
  assert diagnosed['align/blocks/0/angle_update_deg'] > 1
  assert diagnosed['align/blocks/0/angle_delta_deg'] > 1

  network = experiment.network(state)
  np.testing.assert_array_equal(network.blocks[1].dense.feedback[...],
                                end.feedback['blocks/1/dense'])
  np.testing.assert_array_equal(network.head.layers[2].kernel[...],
                                _kernel(end.params, 'head/layers/2'))
  images = next(experiment.train_batches(start_step=3))[0][0]
  network.eval()
  np.testing.assert_allclose(network(experiment.data.spec.preprocess(images)),
                             experiment.model.apply(end, end.params, images, train=False)[0],
                             rtol=1e-6)


@pytest.mark.parametrize('method', ['fa_usf_sn', 'fa_usf_init'])
def test_layers_in_lists_get_sign_concordant_feedback_scaled_per_layer(method):
  experiment = fajax.build(tiny_config(method), model=_listed_model(), data=tiny_data())
  start = single(experiment.state)
  end = single(_train(experiment, 3)[0])
  for layer in LISTED_LAYERS:
    w = _kernel(end.params, layer)
    norm = np.linalg.norm(w if method == 'fa_usf_sn' else _kernel(start.params, layer))
    np.testing.assert_allclose(end.feedback[layer], np.sign(w) * norm / np.sqrt(w.size),
                               rtol=1e-5)


def test_a_run_of_layers_in_lists_resumes_from_its_checkpoint_to_the_uninterrupted_result(
    tmp_path, capsys):
  train = lambda: fajax.train(tiny_config('fa'), str(tmp_path), model=_listed_model(),
                              data=tiny_data())
  full = train()
  log = (tmp_path / 'metrics.jsonl').read_text()
  assert '"align/blocks/1/dense/angle_wb_deg"' in log
  shutil.rmtree(tmp_path / 'checkpoints' / '8')  # as if killed between steps 4 and 8
  capsys.readouterr()
  resumed = train()
  assert 'Resumed from the checkpoint at step 4' in capsys.readouterr().out
  assert resumed == full
  assert (tmp_path / 'metrics.jsonl').read_text() == log


def test_the_init_compiles_unoptimised_on_cpu_only_for_a_small_state():
  largest_small = train_state.UNOPTIMISED_INIT_MAX_VALUES
  assert train_state._init_compiler_options(largest_small) == {'xla_backend_optimization_level': 0}
  assert train_state._init_compiler_options(largest_small + 1) == {
      'xla_backend_optimization_level': 2, 'xla_cpu_use_fusion_emitters': True}
