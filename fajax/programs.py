"""An experiment's jitted programs, shared by every `fajax.build` of the same experiment in a
process.

Building an experiment traces and lowers its init, train, diagnose and evaluation programs,
seconds of Python on a slow CPU even when XLA's persistent cache holds the compiled code (the
cache's key is the lowered program). A second build of the same experiment in the same process
(a run resumed after an error, a notebook cell run again, a test's second run) takes the
programs from here and traces nothing: JAX's own cache then holds the compiled code too.

Two builds are the same experiment when their whole configs are equal and so are the number of
steps, the dataset's `Spec` (shape, classes, preprocessing function), the device mesh and, for
a caller's model, its graphdef (its structure and static attributes). Anything else a program
depends on is an argument (weights, seeds, learning rates, batches). A build that cannot be
keyed (a graphdef holding unhashable attributes, a config that is not JSON) is made afresh,
and so is one with `init_from`.
"""

import collections
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple

import ml_collections

# Each entry holds compiled code (a few MB for LeNet-5, more for ResNet-18), so a process that
# builds many experiments keeps only the latest few.
MAX_EXPERIMENTS = 8


class Programs(NamedTuple):
  """What `fajax.build` makes once per experiment: the model's structure and its jitted
  programs (see `fajax.experiment.Experiment`)."""

  model: Any  # train_state.Model
  initialize: Callable
  train_step: Callable
  diagnose_step: Callable
  train_steps: Callable
  eval_step: Callable


_remembered: collections.OrderedDict[Hashable, Programs] = collections.OrderedDict()


def key(config: ml_collections.ConfigDict, *parts: Any) -> Hashable | None:
  """The experiment's key: the config and `parts` (hashable values that shape its programs), or
  None when they cannot make one."""
  try:
    experiment_key = (config.to_json(sort_keys=True), *parts)
    hash(experiment_key)
  except (TypeError, ValueError):
    return None
  return experiment_key


def recall(experiment_key: Hashable | None) -> Programs | None:
  """The programs remembered under `experiment_key`, if any."""
  if experiment_key is None or experiment_key not in _remembered:
    return None
  _remembered.move_to_end(experiment_key)
  return _remembered[experiment_key]


def remember(experiment_key: Hashable | None, programs: Programs) -> None:
  """Keeps `programs` under `experiment_key` (not when None), forgetting the least recently
  used beyond `MAX_EXPERIMENTS`."""
  if experiment_key is None:
    return
  _remembered[experiment_key] = programs
  _remembered.move_to_end(experiment_key)
  while len(_remembered) > MAX_EXPERIMENTS:
    _remembered.popitem(last=False)
