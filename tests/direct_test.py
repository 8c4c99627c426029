"""DFA and DenseFA against hand-computed gradients and against each other."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fajax import direct
from fajax import models
from fajax.errors import ConfigError
from fajax.layers import FeedbackDense, default_kernel_init
from fajax.models import common
from fajax.models.common import relu_then_pool
from tests.fixtures import STRIDED_SLICE, mlp_batch, mlp_by_hand


class TinyNet(nnx.Module):
  """6 → 5 → 4 → 3 → 3 dense ReLU net: three hidden layers, so DenseFA has a long-range term."""

  def __init__(self, num_classes=3, *, kernel_init=default_kernel_init, rngs):
    self.d1 = FeedbackDense(6, 5, kernel_init=kernel_init, rngs=rngs)
    self.d2 = FeedbackDense(5, 4, kernel_init=kernel_init, rngs=rngs)
    self.d3 = FeedbackDense(4, 3, kernel_init=kernel_init, rngs=rngs)
    self.out = FeedbackDense(3, num_classes, kernel_init=kernel_init, rngs=rngs)
    self.direct = direct.DirectFeedback()

  def __call__(self, x):
    path = self.direct.path(x.shape[0])
    h = path.activate('d1', self.d1(x), nnx.relu)
    h = path.activate('d2', self.d2(h), nnx.relu)
    h = path.activate('d3', self.d3(h), nnx.relu)
    return path.finish(self.out(h))


class PooledNet(nnx.Module):
  """6 → 8 → max over pairs → 3 → 3: one hidden layer whose output is pooled."""

  def __init__(self, num_classes=3, *, kernel_init=default_kernel_init,
               error_after_pooling=False, rngs):
    self.d1 = FeedbackDense(6, 8, kernel_init=kernel_init, rngs=rngs)
    self.d2 = FeedbackDense(4, 3, kernel_init=kernel_init, rngs=rngs)
    self.out = FeedbackDense(3, num_classes, kernel_init=kernel_init, rngs=rngs)
    self.error_after_pooling = error_after_pooling
    self.direct = direct.DirectFeedback()

  def __call__(self, x):
    path = self.direct.path(x.shape[0])
    pool = lambda h: h.reshape(h.shape[0], -1, 2).max(-1)
    h = relu_then_pool(path, 'd1', self.d1(x), pool, self.error_after_pooling)
    h = path.activate('d2', self.d2(h), nnx.relu)
    return path.finish(self.out(h))


@pytest.fixture(autouse=True)
def _register_tiny_net(monkeypatch):
  monkeypatch.setitem(models.MODELS, 'tiny', (TinyNet, (6,)))
  monkeypatch.setitem(models.MODELS, 'pooled', (PooledNet, (6,)))


X, LABELS = mlp_batch()


def _net(mode, seed=0):
  return models.create('tiny', 3, (6,), 'he_normal', nnx.Rngs(params=seed, feedback=seed + 1),
                       direct_mode=mode)


def _loss(net):
  return optax.softmax_cross_entropy_with_integer_labels(net(X), LABELS).mean()


def _grads(net):
  return nnx.to_pure_dict(nnx.grad(_loss)(net))


def test_dfa_hidden_updates_are_b_times_e_through_the_local_derivative():
  net = _net('output')
  grads = _grads(net)
  (a1, a2, a3), (h1, h2, _), e = mlp_by_hand(net, X, LABELS)
  matrices = net.direct.matrices
  delta1 = (e @ matrices['d1_from_output'][...]) * (a1 > 0)
  delta2 = (e @ matrices['d2_from_output'][...]) * (a2 > 0)
  # The top hidden layer takes e through the output layer's own feedback matrix.
  delta3 = (e @ net.out.feedback[...].T) * (a3 > 0)
  np.testing.assert_allclose(grads['d1']['kernel'], X.T @ delta1, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d2']['kernel'], h1.T @ delta2, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d3']['kernel'], h2.T @ delta3, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(grads['d1']['bias'], delta1.sum(0), rtol=1e-5, atol=1e-7)
  # The output layer's update is BP's.
  bp = nnx.to_pure_dict(nnx.grad(lambda n: optax.softmax_cross_entropy_with_integer_labels(
      jax.nn.relu(jax.nn.relu(jax.nn.relu(X @ n.d1.kernel[...] + n.d1.bias[...]) @ n.d2.kernel[...]
      + n.d2.bias[...]) @ n.d3.kernel[...] + n.d3.bias[...]) @ n.out.kernel[...] + n.out.bias[...],
      LABELS).mean())(net))
  np.testing.assert_allclose(grads['out']['kernel'], bp['out']['kernel'], rtol=1e-6)


def test_dfa_updates_do_not_depend_on_layers_above():
  net = _net('output')
  before = _grads(net)['d1']['kernel']
  net.d2.kernel[...] = 3.0 * net.d2.kernel[...]  # changes nothing below d2's input... nor e?
  net.d2.feedback[...] = -net.d2.feedback[...]  # the path FA would use for d1
  after = _grads(net)['d1']['kernel']
  # e changed through the forward pass, so compare with the formula: d1 depends on e only.
  a1 = X @ net.d1.kernel[...] + net.d1.bias[...]
  logits = net(X)
  e = (jax.nn.softmax(logits) - jax.nn.one_hot(LABELS, 3)) / len(X)
  expected = X.T @ ((e @ net.direct.matrices['d1_from_output'][...]) * (a1 > 0))
  np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-7)
  assert not np.allclose(before, after)


def _restricted(net, keep):
  """`net` with every layer's DenseFA sources filtered by `keep(layer, source)`."""
  sources = {layer: tuple(s for s in srcs if keep(layer, s)) or (direct.ADJACENT,)
             for layer, srcs in net.direct.sources.items()}
  restricted = direct.DirectFeedback(sources, direct.taps(net, (6,)), 3,
                                     rngs=nnx.Rngs(feedback=1))
  for name in restricted.matrices:
    restricted.matrices[name][...] = net.direct.matrices[name][...]
  net.direct = restricted
  return net


def test_densefa_layers_read_every_source_above():
  net = _net('all')
  assert net.direct.sources == {
      'd1': ('adjacent', 'd3', 'output'), 'd2': ('adjacent', 'output'), 'd3': ('adjacent',)}
  assert set(net.direct.matrices) == {'d1_from_d3', 'd1_from_output', 'd2_from_output'}


def test_densefa_with_only_adjacent_feedback_is_fa():
  fa = _grads(_net('adjacent'))
  only_adjacent = _grads(_restricted(_net('all'), lambda layer, s: s == direct.ADJACENT))
  jax.tree.map(np.testing.assert_array_equal, only_adjacent, fa)


def test_densefa_with_only_the_outputs_feedback_is_dfa():
  dfa = _grads(_net('output'))
  top = 'd3'
  only_output = _grads(_restricted(
      _net('all'), lambda layer, s: s == direct.OUTPUT or (layer == top and s == direct.ADJACENT)))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), only_output, dfa)


def test_densefa_differs_from_both():
  full = _grads(_net('all'))['d1']['kernel']
  assert not np.allclose(full, _grads(_net('adjacent'))['d1']['kernel'])
  assert not np.allclose(full, _grads(_net('output'))['d1']['kernel'])


def test_densefa_memory_estimate_refuses_over_budget():
  with pytest.raises(ConfigError, match=r"'all' feedback matrices of lenet5 need .* MB, over"):
    models.create('lenet5', 10, (32, 32, 1), 'he_normal', nnx.Rngs(params=0, feedback=1),
                  direct_mode='all', direct_memory_budget_mb=1.0)
  # LeNet-5's DenseFA matrices: 4704·(120+84+10) + 1600·(84+10) + 120·10 entries.
  lenet = models.create('lenet5', 10, (32, 32, 1), 'he_normal', nnx.Rngs(params=0, feedback=1))
  taps = direct.taps(lenet, (32, 32, 1))
  sources = direct.layer_sources('all', [tap.layer for tap in taps])
  expected = 4 * (4704 * 214 + 1600 * 94 + 120 * 10)
  assert direct.memory_bytes(direct.plan_matrices(sources, taps, 10)) == expected


def _pooled_net(mode, after_pooling):
  return models.create('pooled', 3, (6,), 'he_normal', nnx.Rngs(params=0, feedback=1),
                       direct_mode=mode, error_after_pooling=after_pooling)


def test_dfa_error_after_pooling_enters_at_the_pooled_output():
  net = _pooled_net('output', after_pooling=True)
  matrix = net.direct.matrices['d1_from_output'][...]
  assert matrix.shape == (3, 4)  # to the 4 pooled units, not the 8 before pooling
  a1 = X @ net.d1.kernel[...] + net.d1.bias[...]
  e = (jax.nn.softmax(net(X)) - jax.nn.one_hot(LABELS, 3)) / len(X)
  # Pooling routes each pooled unit's signal to the larger of its pair, then ReLU gates it.
  pairs = a1.reshape(len(X), 4, 2)
  is_max = jnp.stack([pairs[..., 0] >= pairs[..., 1], pairs[..., 0] < pairs[..., 1]], -1)
  signal = jnp.repeat(e @ matrix, 2, axis=1) * is_max.reshape(len(X), 8)
  expected = X.T @ (signal * (a1 > 0))
  np.testing.assert_allclose(_grads(net)['d1']['kernel'], expected, rtol=1e-5, atol=1e-7)
  before = _pooled_net('output', after_pooling=False)
  assert before.direct.matrices['d1_from_output'][...].shape == (3, 8)


def test_error_after_pooling_leaves_fa_unchanged():
  # FA's signal passes through pooling's backward pass either way.
  grads = [_grads(_pooled_net('adjacent', after)) for after in (False, True)]
  jax.tree.map(np.testing.assert_array_equal, *grads)


def test_error_after_pooling_needs_a_model_with_pooled_taps():
  with pytest.raises(ConfigError, match='model tiny has no pooling after its tapped layers'):
    models.create('tiny', 3, (6,), 'he_normal', nnx.Rngs(params=0, feedback=1),
                  direct_mode='output', error_after_pooling=True)
  lenet = models.create('lenet5', 10, (32, 32, 1), 'he_normal', nnx.Rngs(params=0, feedback=1),
                        direct_mode='output', error_after_pooling=True)
  assert {name: m[...].shape for name, m in lenet.direct.matrices.items()} == {
      'conv1_from_output': (10, 6 * 14 * 14), 'conv2_from_output': (10, 16 * 5 * 5),
      'conv3_from_output': (10, 120)}


def test_a_tap_computes_its_activation_by_the_route_its_backward_pass_recomputes():
  # Pooling's forward-only route (strided views) in the forward pass would be computed beside
  # the differentiated one (a reduction) that the backward pass needs, instead of once.
  act = lambda a: common.max_pool(jax.nn.relu(a), 2, 2)
  loss = lambda a: jnp.sum(direct._tap(act, 'conv', (direct.ADJACENT,), a, {}, {})[0] ** 2)
  lowered = jax.jit(jax.grad(loss)).lower(jnp.ones((2, 4, 4, 3))).as_text()
  assert 'reduce' in lowered and not STRIDED_SLICE.search(lowered)
