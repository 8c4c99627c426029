"""DFA and DenseFA on models without hand-placed taps: every feedback layer's input but the
first's receives the direct signal, against hand-computed gradients and in training."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import fajax
from fajax import direct
from fajax import wiring
from fajax.errors import ConfigError
from tests.fixtures import PlainCNN, mlp_batch, mlp_by_hand, single, tiny_config, tiny_data

X, LABELS = mlp_batch()


class PlainMLP(nnx.Module):
  """6 → 5 → 4 → 3 → 3 in plain nnx, as direct_test's TinyNet: three hidden layers."""

  def __init__(self, rngs):
    self.d1 = nnx.Linear(6, 5, rngs=rngs)
    self.d2 = nnx.Linear(5, 4, rngs=rngs)
    self.d3 = nnx.Linear(4, 3, rngs=rngs)
    self.out = nnx.Linear(3, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.d1(x.reshape(x.shape[0], -1)))
    x = nnx.relu(self.d2(x))
    return self.out(nnx.relu(self.d3(x)))


def _wired(mode, **kwargs):
  model = fajax.to_feedback(PlainMLP(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  return wiring.wire(model, mode, (6,), 3, nnx.Rngs(feedback=2), **kwargs)


def _loss(net, probes=None):
  with direct.instrumented(net, probes=probes):
    logits = net(X)
  return optax.softmax_cross_entropy_with_integer_labels(logits, LABELS).mean()


def _matrices(net):
  return net.d1.input_tap.direct.matrices


def test_dfa_gives_each_layer_input_but_the_first_b_times_e():
  net = _wired('output')
  probes = {layer: jnp.zeros((8, size)) for layer, size in (('d2', 5), ('d3', 4), ('out', 3))}
  grads, signals = nnx.grad(_loss, argnums=(0, 1))(net, probes)
  grads = nnx.to_pure_dict(grads)
  (a1, a2, a3), (h1, h2, h3), e = mlp_by_hand(net, X, LABELS)
  expected_signals = {
      'd2': e @ _matrices(net)['d2_from_output'][...],
      'd3': e @ _matrices(net)['d3_from_output'][...],
      # The last layer's input takes e through that layer's own feedback weights.
      'out': e @ net.out.feedback[...].T,
  }
  for layer, signal in expected_signals.items():
    np.testing.assert_allclose(signals[layer], signal, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d1']['kernel'], X.T @ (expected_signals['d2'] * (a1 > 0)),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d2']['kernel'], h1.T @ (expected_signals['d3'] * (a2 > 0)),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d3']['kernel'], h2.T @ (expected_signals['out'] * (a3 > 0)),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['out']['kernel'], h3.T @ e, rtol=1e-5, atol=1e-7)
  assert set(_matrices(net)) == {'d2_from_output', 'd3_from_output'}
  assert _matrices(net)['d2_from_output'][...].shape == (3, 5)


def test_densefa_layer_inputs_read_every_source_above():
  net = _wired('all')
  assert net.d1.input_tap.direct.sources == {
      'd2': ('adjacent', 'out', 'output'), 'd3': ('adjacent', 'output'), 'out': ('adjacent',)}
  assert set(_matrices(net)) == {'d2_from_out', 'd2_from_output', 'd3_from_output'}
  fa_grads = nnx.to_pure_dict(nnx.grad(_loss)(_wired('adjacent')))
  dfa_grads = nnx.to_pure_dict(nnx.grad(_loss)(_wired('output')))
  densefa_grads = nnx.to_pure_dict(nnx.grad(_loss)(net))
  for other in (fa_grads, dfa_grads):
    assert not np.allclose(densefa_grads['d1']['kernel'], other['d1']['kernel'])


def test_wiring_changes_neither_the_outputs_nor_a_layer_called_on_its_own():
  plain = fajax.to_feedback(PlainMLP(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  for mode in ('adjacent', 'output', 'all'):
    net = _wired(mode)
    np.testing.assert_array_equal(net(X), plain(X))
    hidden = jax.random.normal(jax.random.key(1), (8, 5))
    dx = jax.grad(lambda h, layer: layer(h).sum())(hidden, net.d2)
    np.testing.assert_array_equal(dx, jax.grad(lambda h: plain.d2(h).sum())(hidden))


def test_a_wired_model_wired_again_takes_the_new_mode():
  fa_grads = nnx.to_pure_dict(nnx.grad(_loss)(_wired('adjacent')))
  dfa = _wired('output')
  dfa_grads = nnx.to_pure_dict(nnx.grad(_loss)(dfa))
  rewired = wiring.wire(dfa, 'adjacent', (6,), 3, nnx.Rngs(feedback=2))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.grad(_loss)(rewired)),
               fa_grads)
  rewired = wiring.wire(rewired, 'output', (6,), 3, nnx.Rngs(feedback=2))
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.grad(_loss)(rewired)),
               dfa_grads)


class PlainTinyMLP(nnx.Module):

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(64, 16, rngs=rngs)
    self.fc2 = nnx.Linear(16, 12, rngs=rngs)
    self.fc3 = nnx.Linear(12, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
    return self.fc3(nnx.relu(self.fc2(x)))


@pytest.mark.parametrize('method', ['dfa', 'densefa'])
@pytest.mark.parametrize('model,matrices', [
    (PlainTinyMLP, {'dfa': ['fc2_from_output'], 'densefa': ['fc2_from_output']}),
    (PlainCNN, {'dfa': ['conv2_from_output', 'fc_from_output'],
                'densefa': ['conv2_from_out', 'conv2_from_output', 'fc_from_output']}),
], ids=['mlp', 'cnn'])
def test_a_converted_model_trains_under_direct_feedback(model, matrices, method):
  converted = fajax.to_feedback(model(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  experiment = fajax.build(tiny_config(method), model=converted, data=tiny_data())
  first = next(iter(experiment.state.error_feedback))
  start = single(experiment.state)
  assert sorted(start.error_feedback[first]['input_tap']['direct']['matrices']) == matrices[
      method]
  state, batches = experiment.state, experiment.train_batches(start_step=0)
  for _ in range(3):
    state, metrics = experiment.train_step(state, *experiment.put_batch(*next(batches)))
    assert np.isfinite(single(metrics)['train/loss'])
  end = single(state)
  for layer in start.feedback:
    assert not np.allclose(end.params[layer]['kernel'], start.params[layer]['kernel']), layer
  jax.tree.map(np.testing.assert_array_equal, end.error_feedback, start.error_feedback)


def test_the_alignment_of_a_converted_model_is_measured_at_each_layer_input():
  converted = fajax.to_feedback(PlainCNN(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  experiment = fajax.build(tiny_config('dfa'), model=converted, data=tiny_data())
  assert experiment.model.hidden_shapes == (('conv2', (4, 4, 4)), ('fc', (8,)), ('out', (16,)))
  _, metrics = experiment.diagnose_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(0))))
  metrics = single(metrics)
  assert metrics['align/conv2/angle_delta_deg'] > 10  # B·e, not what BP sends
  assert metrics['align/out/angle_update_deg'] < 1e-3  # the readout's update is BP's
  assert 'align/conv1/angle_delta_deg' not in metrics  # the model's input needs no signal
  assert all(np.isfinite(metrics[f'align/{layer}/{measure}'])
             for layer in ('conv1', 'conv2', 'fc', 'out')
             for measure in ('angle_wb_deg', 'norm_ratio', 'angle_update_deg'))


class Single(nnx.Module):

  def __init__(self, rngs):
    self.fc = nnx.Linear(64, 3, rngs=rngs)

  def __call__(self, x):
    return self.fc(x.reshape(x.shape[0], -1))


class Twice(nnx.Module):
  """Calls `fc2` twice per forward pass."""

  def __init__(self, rngs):
    self.fc1 = nnx.Linear(64, 8, rngs=rngs)
    self.fc2 = nnx.Linear(8, 8, rngs=rngs)
    self.out = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.relu(self.fc1(x.reshape(x.shape[0], -1)))
    return self.out(nnx.relu(self.fc2(nnx.relu(self.fc2(x)))))


@pytest.mark.parametrize('model,message', [
    (Single, "^Single has a single feedback layer, so 'output' feedback has nowhere to deliver "
             'the error; give it hidden feedback layers'),
    (Twice, "^Twice calls fc2 more than once per forward pass, so 'output' feedback cannot tap "
            "each feedback layer's input once; mark its hidden nonlinearities with "
            r'path.activate \(fajax.direct\) instead'),
])
def test_dfa_with_nowhere_to_deliver_the_error_is_a_config_error(model, message):
  converted = fajax.to_feedback(model(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  with pytest.raises(ConfigError, match=message):
    fajax.build(tiny_config('dfa'), model=converted, data=tiny_data())


def test_a_model_calling_a_layer_twice_trains_untapped_under_fa():
  converted = fajax.to_feedback(Twice(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))
  experiment = fajax.build(tiny_config('fa'), model=converted, data=tiny_data())
  assert experiment.model.hidden_shapes == ()
  _, metrics = experiment.train_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(0))))
  assert np.isfinite(single(metrics)['train/loss'])


def test_direct_feedback_matrices_of_a_converted_model_stay_within_the_budget():
  with pytest.raises(ConfigError, match=r"^the 'all' feedback matrices of the model need "
                     r'0\.0 MB, over direct_feedback_memory_budget_mb=0\.0;'):
    _wired('all', memory_budget_mb=1e-6)
  _wired('all', memory_budget_mb=1.0)
