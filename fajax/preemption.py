"""Stopping a run cleanly when its scheduler asks: SIGTERM (SLURM, preemptible VMs) or SIGINT.

The first signal asks the training loop to stop after the call in flight. The loop saves a
checkpoint at that step and raises `Preempted`; `fajax.main` prints its one line and exits with
`EXIT_CODE` (75, EX_TEMPFAIL: run the same command to resume, which continues bit for bit). A
second signal ends the process at once with the signal's default action; the checkpoints
already written stay whole, since Orbax renames a checkpoint into place only when complete.

With several processes, all must stop at the same step, or their checkpoint would mix steps.
There JAX's coordination service (`jax.distributed`) receives SIGTERM on any process and
`multihost_utils.reached_preemption_sync_point` names one call at which every process stops;
this module then installs no handler of its own.
"""

import os
import signal
import threading

import jax
from jax.experimental import multihost_utils

EXIT_CODE = os.EX_TEMPFAIL
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
  """The run stopped on a signal after saving a checkpoint at `step`; rerun to resume."""

  def __init__(self, signal_name: str | None, step: int):
    super().__init__(f'stopped by {signal_name} at step {step}, after saving a checkpoint there; '
                     'run the same command again to resume')
    self.step = step


class StopRequest:
  """Within `with`, notes the first SIGTERM / SIGINT; `due(call)` says whether to stop now.

  Handlers are installed only when `active`, in the main thread (signal handlers cannot be set
  elsewhere) of a single-process run; the previous ones come back on exit.
  """

  def __init__(self, active: bool = True):
    self.active = active
    self.signal_name: str | None = None
    self._previous: dict = {}  # signal number → the handler it had before

  def __enter__(self) -> 'StopRequest':
    if (self.active and jax.process_count() == 1
        and threading.current_thread() is threading.main_thread()):
      self._previous = {signum: signal.signal(signum, self._note) for signum in SIGNALS}
    return self

  def __exit__(self, *exc_info) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)

  def _note(self, signum, frame) -> None:
    if self.signal_name is not None:  # the second signal: what it would have done without us
      signal.signal(signum, self._previous[signum])
      if callable(self._previous[signum]):
        self._previous[signum](signum, frame)
      else:
        os.kill(os.getpid(), signum)
      return
    self.signal_name = signal.Signals(signum).name

  def due(self, call: int) -> bool:
    """Whether to stop after call number `call` (counted from this process's start, so every
    process of a run numbers its calls alike)."""
    if (self.active and jax.process_count() > 1
        and multihost_utils.reached_preemption_sync_point(call)):
      self.signal_name = 'SIGTERM'
    return self.signal_name is not None
