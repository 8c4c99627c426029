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


def test_only_the_latest_experiments_are_kept(monkeypatch):
  monkeypatch.setattr(programs, '_remembered', type(programs._remembered)())
  entries = {i: programs.Programs(*(object() for _ in programs.Programs._fields))
             for i in range(programs.MAX_EXPERIMENTS + 1)}
  for i in range(programs.MAX_EXPERIMENTS):
    programs.remember(i, entries[i])
  assert programs.recall(0) is entries[0]  # now the most recently used
  programs.remember(programs.MAX_EXPERIMENTS, entries[programs.MAX_EXPERIMENTS])
  assert programs.recall(1) is None and programs.recall(0) is entries[0]
  assert programs.recall(None) is None
  programs.remember(None, entries[0])
  assert len(programs._remembered) == programs.MAX_EXPERIMENTS


def test_a_config_that_is_not_json_keys_nothing():
  config = tiny_config()
  config.not_json = object()
  assert programs.key(config, 1) is None
  assert programs.key(tiny_config(), 1) == programs.key(tiny_config(), 1)
  assert programs.key(tiny_config(), {'unhashable': 1}) is None
