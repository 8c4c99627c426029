"""`fajax.programs`: builds of the same experiment share their jitted programs, others do not."""

import jax
import numpy as np
from flax import nnx

import fajax
from fajax import programs
from tests.fixtures import TinyMLP, tiny_config, tiny_data

_PROGRAMS = ('train_step', 'diagnose_step', 'train_steps', 'eval_step')


def _build(config=None, model=None):
  return fajax.build(config or tiny_config('fa_usf_sn'),
                     model=model or TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())


def _shares_programs(a, b) -> bool:
  return all(getattr(a, name) is getattr(b, name) for name in _PROGRAMS)


def test_a_second_build_of_the_same_experiment_reuses_the_first_ones_programs():
  first, second = _build(), _build()
  assert _shares_programs(first, second) and first.model is second.model
  jax.tree.map(np.testing.assert_array_equal, first.state, second.state)
  batch = first.put_batch(*next(first.train_batches(0)))
  _, first_metrics = first.train_step(first.state, *batch)
  # The first step donated the state it was given, so the second build's state is its own.
  _, second_metrics = second.train_step(second.state, *batch)
  np.testing.assert_array_equal(first_metrics['train/loss'], second_metrics['train/loss'])


def test_another_config_or_model_gets_programs_of_its_own():
  reference = _build()
  assert not _shares_programs(reference, _build(tiny_config('fa_usf_sn', learning_rate=0.01)))
  assert not _shares_programs(reference, _build(model=TinyMLP(hidden=8, rngs=nnx.Rngs(0))))


def test_builds_of_other_methods_on_the_same_network_share_the_program_that_draws_it(
    monkeypatch):
  monkeypatch.setattr(programs, 'networks', programs.Recent(programs.MAX_NETWORKS))
  fa = _build(tiny_config('fa'))
  usf_sn = _build(tiny_config('fa_usf_sn', optimizer='adam', learning_rate=1e-3))
  assert len(programs.networks) == 1
  assert not _shares_programs(fa, usf_sn)
  jax.tree.map(np.testing.assert_array_equal, fa.state.params, usf_sn.state.params)
  dfa = _build(tiny_config('dfa'))
  assert len(programs.networks) == 2  # DFA's network holds its feedback matrices too
  assert dfa.state.error_feedback and not fa.state.error_feedback


class _WithAPlainDict(TinyMLP):
  """A caller's model with an attribute NNX cannot hash, so its graphdef keys nothing."""

  def __init__(self, *, rngs):
    super().__init__(rngs=rngs)
    self.notes = {'origin': 'a plain dict'}


def test_a_model_whose_structure_cannot_be_hashed_is_built_afresh_each_time():
  first, second = (_build(model=_WithAPlainDict(rngs=nnx.Rngs(0))) for _ in range(2))
  assert not _shares_programs(first, second)
  batch = first.put_batch(*next(first.train_batches(0)))
  _, metrics = second.train_step(second.state, *batch)
  assert np.isfinite(metrics['train/loss']).all()


def test_only_the_latest_entries_are_kept():
  recent = programs.Recent(3)
  for i in range(3):
    recent.remember(i, f'programs {i}')
  assert recent.recall(0) == 'programs 0'  # now the most recently used
  recent.remember(3, 'programs 3')
  assert recent.recall(1) is None and recent.recall(0) == 'programs 0'
  assert recent.recall(None) is None
  recent.remember(None, 'programs of no key')
  assert len(recent) == 3


def test_a_config_that_is_not_json_keys_nothing():
  config = tiny_config()
  config.not_json = object()
  assert programs.key(config, 1) is None
  assert programs.key(tiny_config(), 1) == programs.key(tiny_config(), 1)
  assert programs.key(tiny_config(), {'unhashable': 1}) is None
  assert programs.key(None, 'lenet5', 1) == (None, 'lenet5', 1)
