"""A run's folder: config.json, the metrics (metrics.jsonl, TensorBoard events, and the other
trackers of `config.trackers`), and Orbax checkpoints.

    run = Workdir(path, config, caller_objects, is_main)   # path None: a run that writes nothing
    state = run.resume(initial_state, say)                 # the latest readable checkpoint
    run.write_metrics(step, {...}); run.save(step, state); run.close()

Only process 0 (`is_main`) writes config.json and the metrics; every process takes part in the
checkpoint writes, which Orbax coordinates.
"""

import contextlib
import errno
import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from fajax import trackers as trackers_lib
from fajax.errors import CheckpointError
from fajax.errors import ConfigError
from fajax.errors import StorageError

CONFIG_FILE = 'config.json'
# Per-step train metrics not yet logged when a checkpoint was saved between logging steps
# (at a preemption), so that the resumed run logs the same means as an uninterrupted one.
INTERVAL_FILE = 'unlogged_steps.npz'
# config.json's record of the caller's objects a run used instead of config.model / .dataset.
CALLER_OBJECTS_KEY = 'caller_objects'


# What a full or read-only disk is called by the OS (OSError.errno) and by Orbax, whose
# TensorStore writes report it inside a ValueError's message.
_STORAGE_FAILURES = {
    errno.ENOSPC: 'No space left on device',
    errno.EROFS: 'Read-only file system',
    errno.EDQUOT: 'Disk quota exceeded',
}


def _storage_failure(error: BaseException) -> str | None:
  """What made a write fail, when it was the disk: full, read-only or over quota."""
  if isinstance(error, OSError) and error.errno in _STORAGE_FAILURES:
    return _STORAGE_FAILURES[error.errno]
  return next((reason for reason in _STORAGE_FAILURES.values() if reason in str(error)), None)


class MetricsLog:
  """The records of a run, one per replica and logging step, written through each of its
  trackers (`fajax.trackers`); a run without trackers (no workdir, or not process 0) writes
  none."""

  def __init__(self, trackers: list[trackers_lib.Tracker]):
    self.trackers = trackers

  def rewind(self, step: int) -> None:
    """The run resumes from its checkpoint at `step`: the records after it come again."""
    for tracker in self.trackers:
      tracker.rewind(step)

  def write(self, step: int, records: list[dict]) -> None:
    for tracker in self.trackers:
      tracker.write(step, records)

  def close(self) -> None:
    for tracker in self.trackers:
      tracker.close()


def _leaf_shapes(tree) -> dict[str, tuple]:
  """'params/conv1/kernel' → shape, for a train state or a checkpoint's metadata tree."""
  def name(key):
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        return str(getattr(key, attribute))
    return str(key)

  def shape(leaf):
    if jax.dtypes.issubdtype(getattr(leaf, 'dtype', None), jax.dtypes.prng_key):
      return jax.eval_shape(jax.random.key_data, leaf).shape  # a key is saved as its raw data
    return leaf.shape

  flat, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {'/'.join(name(k) for k in path): tuple(shape(leaf)) for path, leaf in flat}


def check_same_shapes(saved: dict, expected: dict, where: str) -> None:
  """Raises ConfigError for another number of replicas (the leading axis of every leaf), or
  naming the first leaf whose shape differs, or that one side lacks."""
  replicas = lambda shapes: shapes.get('step', (None,))[0]
  if replicas(saved) != replicas(expected):
    raise ConfigError(
        f'{where} holds {replicas(saved)} replicas, but this run has {replicas(expected)}: '
        'resume with the same replicas and sweep, or use a new workdir')
  saved = {leaf: shape[1:] for leaf, shape in saved.items()}
  expected = {leaf: shape[1:] for leaf, shape in expected.items()}
  for leaf in [*expected, *(leaf for leaf in saved if leaf not in expected)]:
    if saved.get(leaf) != expected.get(leaf):
      raise ConfigError(
          f'{where} holds {leaf} of shape {saved.get(leaf, "(none)")}, but this run\'s model '
          f'has {expected.get(leaf, "(none)")}: resume with the model that wrote it, or use a '
          'new workdir')


def check_resumable(path: str | None, caller_objects: dict) -> None:
  """A run that trained a caller's model or data resumes only with such objects again, and a
  run of the config's own only without them."""
  if not path:
    return
  config_path = os.path.join(path, CONFIG_FILE)
  if not os.path.exists(config_path) or not os.path.isdir(os.path.join(path, 'checkpoints')):
    return
  with open(config_path) as f:
    saved = json.load(f).get(CALLER_OBJECTS_KEY, {})
  for name in ('model', 'data'):
    if name in saved and name not in caller_objects:
      raise ConfigError(
          f'the run in {path} trained a caller\'s {name} ({saved[name]}); pass the same '
          f'{name}= to fajax.train to resume it, or use a new workdir')
    if name in caller_objects and name not in saved:
      raise ConfigError(
          f'the run in {path} trained the config\'s {name}, not a caller\'s; resume it '
          f'without {name}=, or use a new workdir')


def checkpoint_directory(path: str) -> str:
  """Where the run in `path` keeps its Orbax checkpoints, a folder per step."""
  return os.path.join(os.path.abspath(path), 'checkpoints')


def checkpoint_steps(path: str | None) -> list[int]:
  """The steps at which the run in `path` saved a whole checkpoint; [] for none."""
  return ocp.utils.checkpoint_steps(checkpoint_directory(path)) if path else []


class Workdir:
  """The files of one run; with `path` None, a run that writes and resumes nothing."""

  def __init__(self, path: str | None, config, caller_objects: dict, is_main: bool,
               checkpoints_to_keep: int = 2):
    self.path = path
    self.is_main = is_main
    self.log = MetricsLog(trackers_lib.create(config, path) if path and is_main else [])
    self.checkpoints = None
    if not path:
      return
    self.checkpoints = ocp.CheckpointManager(
        checkpoint_directory(path),
        options=ocp.CheckpointManagerOptions(max_to_keep=checkpoints_to_keep),
        item_handlers=ocp.StandardCheckpointHandler(),  # so that metadata reads before a restore
    )
    if is_main:
      os.makedirs(path, exist_ok=True)
      record = {**json.loads(config.to_json_best_effort()), CALLER_OBJECTS_KEY: caller_objects}
      with self._writing(CONFIG_FILE), open(os.path.join(path, CONFIG_FILE), 'w') as f:
        json.dump(record, f, indent=2)

  @property
  def saves_checkpoints(self) -> bool:
    return self.checkpoints is not None

  def latest_checkpoint_step(self) -> int | None:
    return self.checkpoints.latest_step() if self.checkpoints else None

  def resume(self, state, say):
    """The newest checkpoint that restores, else `state`; damaged ones are skipped with a warning.

    The state is restored onto this run's devices and layout (`state`'s shardings), whatever the
    saving run's were. The metrics log rewinds to the restored step.
    """
    if not self.checkpoints or not self.checkpoints.all_steps():
      # Killed before its first checkpoint was whole: it starts afresh, so do its metrics.
      with self._writing('the metrics'):
        self.log.rewind(int(state.step[0]))
      return state
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
    expected = _leaf_shapes(state)
    for step in sorted(self.checkpoints.all_steps(), reverse=True):
      try:
        saved = _leaf_shapes(self.checkpoints.item_metadata(step).tree)
      except Exception:  # pylint: disable=broad-except  # damaged: the restore below says so
        saved = None
      if saved is not None:
        check_same_shapes(saved, expected, f'the checkpoint at step {step} in {self.path}')
      try:
        restored = self.checkpoints.restore(step, args=ocp.args.StandardRestore(abstract))
      except Exception as e:  # pylint: disable=broad-except  # Orbax raises many kinds.
        say(f'warning: the checkpoint at step {step} cannot be read ({type(e).__name__}); '
            'trying the one before it')
        continue
      with self._writing('the metrics'):
        self.log.rewind(int(restored.step[0]))
      say(f'Resumed from the checkpoint at step {int(restored.step[0])} in {self.path}')
      return restored
    raise CheckpointError(
        f'no checkpoint in {self.checkpoints.directory} can be read; move that folder away to '
        'start the run afresh')

  @contextlib.contextmanager
  def _writing(self, what: str):
    """Turns a write that failed for lack of space or of write access into a StorageError
    naming the checkpoint that stays good; a run stopped there loses nothing after it."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except  # Orbax wraps OS errors in others
      reason = _storage_failure(e)
      if reason is None:
        raise
      kept = self.latest_checkpoint_step()
      raise StorageError(
          f'cannot write {what} in {self.path}: {reason.lower()}; '
          + (f'the checkpoint at step {kept} is kept. ' if kept is not None else '')
          + 'Free space or make the folder writable, then run the same command to resume'
      ) from e

  def write_metrics(self, step: int, lines: list[dict]) -> None:
    with self._writing(f'the metrics of step {step}'):
      self.log.write(step, lines)

  def save(self, step: int, state, unlogged: dict | None = None) -> None:
    """Checkpoints `state` at `step`, with `unlogged` ('train/...' → [step, replica] arrays of
    the steps since the last log), which `restore_interval` gives back on resuming there.

    The interval is written first, so a whole checkpoint always has its interval beside it.
    """
    assert self.path and self.checkpoints, 'a run without a workdir saves no checkpoint'
    interval_path = os.path.join(self.path, INTERVAL_FILE)
    with self._writing(f'the checkpoint of step {step}'):
      if unlogged and self.is_main:
        temporary = f'{interval_path}.tmp.npz'
        np.savez(temporary, step=step, **unlogged)
        os.replace(temporary, interval_path)
      self.checkpoints.save(step, args=ocp.args.StandardSave(state))

  def restore_interval(self, step: int) -> list[dict]:
    """The unlogged metrics saved with the checkpoint at `step` (one [step, replica] array per
    key, in a list like the loop's per-call ones), or [] when that checkpoint had none."""
    interval_path = os.path.join(self.path, INTERVAL_FILE) if self.path and self.is_main else ''
    if not os.path.exists(interval_path):
      return []
    with np.load(interval_path) as saved:
      if int(saved['step']) != step:
        return []
      return [{key: saved[key] for key in saved.files if key != 'step'}]

  def close(self) -> None:
    """Finishes every write, also when stopping on an error: never a half checkpoint."""
    try:
      with self._writing('the metrics'):
        self.log.close()
    finally:
      if self.checkpoints:
        with self._writing('the last checkpoint'):
          self.checkpoints.wait_until_finished()
        self.checkpoints.close()
