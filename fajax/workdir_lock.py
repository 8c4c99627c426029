"""One run per workdir: a lock file naming the run that holds it.

    with workdir_lock.held(path, say):   # WorkdirInUse (exit 2) while another live run holds it
      ...

The lock is `<workdir>/lock`, created with O_CREAT | O_EXCL, which is atomic on local disks and
on the shared file systems the launch scripts document (NFS v3 and later, Lustre, GPFS), with no
mount option needed. It records the host, the process id with its start time (a reused pid is
not its process) and a random token; the holder touches it every HEARTBEAT_SECONDS. A lock whose
run is gone is stale and taken over with a warning: on the same host when its process no longer
exists, from another host (a preempted node, whose processes cannot be seen from here) when its
heartbeat stopped STALE_SECONDS ago.
"""

import contextlib
import json
import os
import secrets
import socket
import threading
import time

import jax
from jax.experimental import multihost_utils
import numpy as np

from fajax.errors import FajaxError

LOCK_FILE = 'lock'
HEARTBEAT_SECONDS = 30
# Several heartbeats, and room for clocks of two hosts that disagree by a minute or two.
STALE_SECONDS = 300


class WorkdirInUse(FajaxError):
  """Another run holds the workdir."""


def _process_start(pid: int) -> str | None:
  """The process's start time in clock ticks since boot (Linux), None where unknown."""
  try:
    with open(f'/proc/{pid}/stat') as f:
      # The command name, field 2, may hold spaces; the fields after its ')' are fixed.
      return f.read().rsplit(')', 1)[1].split()[19]
  except (OSError, IndexError):
    return None


def _alive(pid: int, start: str | None) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # another user's process: it exists
  return start is None or _process_start(pid) in (None, start)


def _read(path: str) -> dict | None:
  """The lock's record and its heartbeat age; None when it vanished or is half-written."""
  try:
    age = time.time() - os.stat(path).st_mtime
    with open(path) as f:
      return {**json.load(f), 'age': age}
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    # Being written now, or left half-written by a crash: stale once old enough.
    return {'host': '?', 'pid': -1, 'token': None, 'age': age}


def _is_stale(record: dict) -> bool:
  if record['host'] == socket.gethostname():
    return not _alive(record['pid'], record.get('start'))
  return record['age'] > STALE_SECONDS


def _describe(record: dict) -> str:
  return f"host {record['host']}, process {record['pid']}"


def acquire(workdir: str, say) -> str:
  """Creates the workdir's lock and returns its path, taking over a stale one with a warning
  (`say`); raises WorkdirInUse naming the live run that holds it."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, LOCK_FILE)
  mine = {'host': socket.gethostname(), 'pid': os.getpid(),
          'start': _process_start(os.getpid()), 'token': secrets.token_hex(8)}
  while True:
    try:
      descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      record = _read(path)
      if record is None:
        continue  # released between our two calls
      if not _is_stale(record):
        raise WorkdirInUse(
            f'workdir {workdir} is in use by the run of {_describe(record)} (its lock, '
            f'{path}, was renewed {record["age"]:.0f} s ago); wait for it to end or use another '
            f'workdir. A run that is gone without releasing it is taken over '
            f'{STALE_SECONDS} s after its last renewal, or delete the lock by hand')
      _take_over(path, record, say)
      continue
    with os.fdopen(descriptor, 'w') as f:
      json.dump(mine, f)
    return path


def _take_over(path: str, record: dict, say) -> None:
  """Moves the stale lock aside. Of several runs taking it over at once one wins the rename;
  one that renamed a lock other than the stale one it read (a winner's fresh lock) puts it
  back."""
  aside = f'{path}.stale.{socket.gethostname()}.{os.getpid()}'
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return
  moved = _read(aside)
  if moved is not None and moved.get('token') != record.get('token'):
    os.rename(aside, path)
    return
  os.remove(aside)
  say(f'warning: took over the lock of {_describe(record)}, which is gone')


def _heartbeat(path: str, stop: threading.Event) -> None:
  while not stop.wait(HEARTBEAT_SECONDS):
    with contextlib.suppress(OSError):  # a full or read-only disk ends the run elsewhere
      os.utime(path)


@contextlib.contextmanager
def held(workdir: str | None, say):
  """Holds the workdir's lock for the block, renewing it; no workdir, no lock.

  Process 0 holds it for all of a run's processes, and tells them whether it could: each raises
  WorkdirInUse, rather than waiting for a process 0 that left.
  """
  if workdir is None:
    yield
    return
  path = refused = None
  if jax.process_index() == 0:
    try:
      path = acquire(workdir, say)
    except WorkdirInUse as e:
      refused = e
  if jax.process_count() > 1 and multihost_utils.broadcast_one_to_all(
      np.int32(refused is not None)) and refused is None:
    refused = WorkdirInUse(f'workdir {workdir} is in use by another run (process 0 says which)')
  if refused:
    raise refused
  if path is None:
    yield
    return
  stop = threading.Event()
  renewer = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True,
                             name='fajax-workdir-lock')
  renewer.start()
  try:
    yield
  finally:
    stop.set()
    renewer.join()
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
