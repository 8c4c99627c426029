"""A signal stops a run at a checkpoint it resumes from bit for bit; injected faults too."""

import errno
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import fajax
from fajax import faults
from fajax import preemption
from fajax import workdir as workdir_lib
from fajax.errors import StorageError
from tests.fixtures import TinyMLP, tiny_config, tiny_data

REPO = pathlib.Path(__file__).resolve().parent.parent
# Calls of 2 steps where they fit before the diagnosed step of each logging interval (4 steps):
# steps 0→2, 3, 4, then 4→6, 7, 8 (fajax.loop.steps_in_next_call). BP + Noise: a rule whose
# state (its key) a resume must restore, or the noise, and every number after it, would differ.
RUN = dict(method='bp_noise', num_train_steps=8, log_every_steps=4, checkpoint_every_steps=4,
           steps_per_call=2, replicas=2)


def _train(workdir, fault='', monkeypatch=None):
  if monkeypatch is not None:
    monkeypatch.setenv(faults.ENV, fault)
  return fajax.train(tiny_config(**RUN), str(workdir), model=TinyMLP(rngs=nnx.Rngs(0)),
                     data=tiny_data())


def _final_arrays(workdir):
  with ocp.StandardCheckpointer() as checkpointer:
    return checkpointer.restore(os.path.abspath(workdir / 'checkpoints' / '8' / 'default'))


def _assert_same_run(workdir, reference):
  assert (workdir / 'metrics.jsonl').read_text() == (reference / 'metrics.jsonl').read_text()
  raw = lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
      x.dtype, jax.dtypes.prng_key) else x
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(raw(a), raw(b)),
               _final_arrays(workdir), _final_arrays(reference))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  os.environ.pop(faults.ENV, None)
  _train(workdir)
  return workdir


@pytest.mark.parametrize('fault_step', [2, 6])  # after a stacked call, in each logging interval
def test_sigterm_saves_where_it_stopped_and_resumes_bit_for_bit(
    fault_step, tmp_path, uninterrupted, monkeypatch):
  with pytest.raises(preemption.Preempted, match=f'stopped by SIGTERM at step {fault_step}, '
                     'after saving a checkpoint there; run the same command again to resume'):
    _train(tmp_path, f'term@step:{fault_step}', monkeypatch)
  assert fault_step in {int(p.name) for p in (tmp_path / 'checkpoints').iterdir()}
  _train(tmp_path, '', monkeypatch)
  _assert_same_run(tmp_path, uninterrupted)


def test_an_exception_during_evaluation_loses_nothing(tmp_path, uninterrupted, monkeypatch):
  with pytest.raises(faults.InjectedFault):
    _train(tmp_path, 'raise@eval:8', monkeypatch)
  _train(tmp_path, '', monkeypatch)
  _assert_same_run(tmp_path, uninterrupted)


# What a full disk raised in a run on a 120 kB tmpfs (BUILD_NOTES, "Reliability"): Orbax's
# TensorStore writes wrap the OS error in a ValueError; tensorboardX and open() raise OSError.
ORBAX_DISK_FULL = ValueError(
    'RESOURCE_EXHAUSTED: Error writing local file "checkpoints/8.orbax-checkpoint-tmp/_sharding":'
    " Failed to write 897 bytes to file 7: No space left on device [os_error_code='28']")


def _fail_at_step(monkeypatch, writer, failing_step, error):
  """The Orbax or metrics write of `failing_step` raises `error`, as the disk would."""
  owner, method = writer
  original = getattr(owner, method)

  def write(self, step, *args, **kwargs):
    if step == failing_step:
      raise error
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(owner, method, write)


@pytest.mark.parametrize('writer,error,what,reason', [
    ((ocp.CheckpointManager, 'save'), ORBAX_DISK_FULL, 'the checkpoint of step 8',
     'no space left on device'),
    ((workdir_lib.MetricsLog, 'write'), OSError(errno.EROFS, 'Read-only file system'),
     'the metrics of step 8', 'read-only file system'),
], ids=['checkpoint-disk-full', 'metrics-read-only'])
def test_a_disk_that_fills_or_turns_read_only_keeps_the_last_checkpoint(
    writer, error, what, reason, tmp_path, uninterrupted, monkeypatch):
  _fail_at_step(monkeypatch, writer, 8, error)
  with pytest.raises(StorageError, match=re.escape(
      f'cannot write {what} in {tmp_path}: {reason}; the checkpoint at step 4 is kept. Free '
      'space or make the folder writable, then run the same command to resume')):
    _train(tmp_path, '', monkeypatch)
  monkeypatch.undo()
  _train(tmp_path, '', monkeypatch)  # the disk has room again
  _assert_same_run(tmp_path, uninterrupted)


def test_a_workdir_that_cannot_be_written_at_all_is_one_error(tmp_path, monkeypatch):
  real_open = open

  def read_only_open(path, mode='r', *args, **kwargs):
    if str(path).startswith(str(tmp_path)) and set(mode) & set('wa'):
      raise OSError(errno.EROFS, 'Read-only file system', str(path))
    return real_open(path, mode, *args, **kwargs)

  monkeypatch.setattr('builtins.open', read_only_open)
  with pytest.raises(StorageError, match=f'^cannot write config.json in {tmp_path}: read-only '
                     'file system; Free space or make the folder writable'):
    _train(tmp_path)


def _process(workdir, fault):
  return subprocess.run([sys.executable, '-m', 'tests.tiny_run', str(workdir), json.dumps(RUN)],
                        capture_output=True, text=True, cwd=REPO, timeout=300,
                        env={**os.environ, faults.ENV: fault})


@pytest.mark.parametrize('fault', ['kill@step:6', 'kill@checkpoint:4', 'kill@final'])
def test_a_killed_process_resumes_to_the_uninterrupted_run(
    fault, tmp_path, uninterrupted, monkeypatch):
  killed = _process(tmp_path, fault)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  # Only the killed run needs a process of its own; the resume reads what it left on disk.
  _train(tmp_path, '', monkeypatch)
  _assert_same_run(tmp_path, uninterrupted)


def test_the_command_line_says_one_line_and_exits_75(tmp_path):
  stopped = _process(tmp_path, 'term@step:6')
  assert stopped.returncode == preemption.EXIT_CODE == 75
  assert stopped.stderr.strip().splitlines()[-1] == (
      'fajax: stopped by SIGTERM at step 6, after saving a checkpoint there; run the same '
      'command again to resume')
  assert 'Traceback' not in stopped.stderr


def _wait_for(condition):
  deadline = time.time() + 5
  while not condition() and time.time() < deadline:
    time.sleep(0.01)  # Python runs a signal's handler between bytecodes of the main thread


def test_a_second_signal_does_what_it_did_before():
  received = []
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
  try:
    with preemption.StopRequest() as request:
      assert not request.due(1)
      os.kill(os.getpid(), signal.SIGTERM)
      _wait_for(lambda: request.signal_name)
      assert request.due(2) and request.signal_name == 'SIGTERM' and not received
      os.kill(os.getpid(), signal.SIGTERM)
      _wait_for(lambda: received)
      assert received == [signal.SIGTERM]
    assert signal.getsignal(signal.SIGTERM) is not request._note
  finally:
    signal.signal(signal.SIGTERM, previous)


def test_without_a_workdir_signals_are_left_alone():
  before = signal.getsignal(signal.SIGINT)
  with preemption.StopRequest(active=False) as request:
    assert signal.getsignal(signal.SIGINT) is before and not request.due(1)


@pytest.mark.parametrize('spec', ['explode@step:3', 'kill@somewhere:3', 'kill@step', 'kill@final:2'])
def test_a_malformed_fault_is_refused(spec):
  with pytest.raises(ValueError, match=f'{faults.ENV}={spec}: give ACTION@POINT:STEP'):
    faults.Faults(spec)
