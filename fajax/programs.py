"""Jitted programs shared by every `fajax.build` in a process that can use them.

Building an experiment traces and lowers its init, train, diagnose and evaluation programs,
seconds of Python on a slow CPU even when XLA's persistent cache holds the compiled code (the
cache's key is the lowered program). A second build of the same experiment in the same process
(a run resumed after an error, a notebook cell run again, a test's second run) takes the
programs from `experiments` and traces nothing: JAX's own cache then holds the compiled code
too. A build of another experiment on the same network (another method, optimizer or learning
rate) takes from `networks` the program that draws the network's weights
(`train_state.NetworkProgram`), the largest part of the init.

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

# Each experiment holds compiled code (a few MB for LeNet-5, more for ResNet-18), so a process
# that builds many keeps only the latest few.
MAX_EXPERIMENTS = 8
MAX_NETWORKS = 8


class Programs(NamedTuple):
  """What `fajax.build` makes once per experiment: the model's structure and its jitted
  programs (see `fajax.experiment.Experiment`)."""

  model: Any  # train_state.Model
  initialize: Callable
  train_step: Callable
  diagnose_step: Callable
  train_steps: Callable
  eval_step: Callable


class Recent:
  """The latest `size` values remembered under keys; the least recently used goes first."""

  def __init__(self, size: int):
    self.size = size
    self._entries: collections.OrderedDict[Hashable, Any] = collections.OrderedDict()

  def __len__(self) -> int:
    return len(self._entries)

  def recall(self, key: Hashable | None) -> Any:
    """The value remembered under `key`, or None."""
    if key is None or key not in self._entries:
      return None
    self._entries.move_to_end(key)
    return self._entries[key]

  def remember(self, key: Hashable | None, value: Any) -> None:
    """Keeps `value` under `key` (not when None), forgetting the least recently used beyond
    `size`."""
    if key is None:
      return
    self._entries[key] = value
    self._entries.move_to_end(key)
    while len(self._entries) > self.size:
      self._entries.popitem(last=False)


experiments = Recent(MAX_EXPERIMENTS)  # Programs by `key`
networks = Recent(MAX_NETWORKS)  # train_state.NetworkProgram by `key`


def key(config: ml_collections.ConfigDict | None, *parts: Any) -> Hashable | None:
  """A key of the config (None: none) and `parts` (hashable values that shape the programs),
  or None when they cannot make one."""
  try:
    program_key = (None if config is None else config.to_json(sort_keys=True), *parts)
    hash(program_key)
  except (TypeError, ValueError):
    return None
  return program_key
