"""One run per workdir: a live holder refuses a second run; a gone one is taken over."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from fajax import workdir_lock
from fajax.workdir_lock import WorkdirInUse

from tests.conftest import REPO


def _write_lock(workdir, **record):
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, workdir_lock.LOCK_FILE)
  with open(path, 'w') as f:
    json.dump({'host': socket.gethostname(), 'pid': os.getpid(), 'start': None, 'token': 'x',
               **record}, f)
  return path


def _gone_pid():
  finished = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                            capture_output=True, text=True, check=True)
  return int(finished.stdout)


def test_a_second_holder_is_refused_and_the_lock_goes_with_the_first(tmp_path):
  said = []
  with workdir_lock.held(str(tmp_path), said.append):
    record = json.loads((tmp_path / 'lock').read_text())
    assert (record['host'], record['pid']) == (socket.gethostname(), os.getpid())
    with pytest.raises(WorkdirInUse, match=f'in use by the run of host {socket.gethostname()}, '
                       f'process {os.getpid()}'):
      workdir_lock.acquire(str(tmp_path), said.append)
  assert not (tmp_path / 'lock').exists() and not said
  with workdir_lock.held(str(tmp_path), said.append):  # free again
    pass


def test_the_lock_of_a_process_that_is_gone_is_taken_over_with_a_warning(tmp_path):
  pid = _gone_pid()
  _write_lock(tmp_path, pid=pid)
  said = []
  path = workdir_lock.acquire(str(tmp_path), said.append)
  assert json.loads(open(path).read())['pid'] == os.getpid()
  assert said == [f'warning: took over the lock of host {socket.gethostname()}, process {pid}, '
                  'which is gone']
  assert os.listdir(tmp_path) == ['lock']


def test_a_reused_pid_is_not_the_process_that_took_the_lock(tmp_path):
  # Our own pid, alive, but started at another time than the lock records.
  _write_lock(tmp_path, start='1')
  said = []
  workdir_lock.acquire(str(tmp_path), said.append)
  assert len(said) == 1


@pytest.mark.parametrize('age,refused', [(10, True), (workdir_lock.STALE_SECONDS + 60, False)])
def test_another_hosts_lock_is_stale_once_its_heartbeat_stops(tmp_path, age, refused):
  path = _write_lock(tmp_path, host='node-that-was-preempted', pid=1)
  os.utime(path, (time.time() - age,) * 2)
  said = []
  if refused:
    with pytest.raises(WorkdirInUse, match='node-that-was-preempted, process 1 .* renewed'):
      workdir_lock.acquire(str(tmp_path), said.append)
  else:
    workdir_lock.acquire(str(tmp_path), said.append)
    assert 'node-that-was-preempted' in said[0]


def test_the_holder_renews_its_lock(tmp_path, monkeypatch):
  monkeypatch.setattr(workdir_lock, 'HEARTBEAT_SECONDS', 0.05)
  with workdir_lock.held(str(tmp_path), print):
    path = tmp_path / 'lock'
    os.utime(path, (time.time() - 1000,) * 2)
    time.sleep(0.5)
    assert time.time() - path.stat().st_mtime < 5


def test_a_second_run_on_a_workdir_in_use_exits_2_with_one_line(tmp_path, mnist_data_dir):
  _write_lock(tmp_path)  # held by this live test process
  result = subprocess.run(
      [sys.executable, '-m', 'fajax.main', '--config=mnist_bp',
       f'--workdir={tmp_path}'], capture_output=True, text=True, cwd=REPO, timeout=300,
      env={**os.environ, 'FAJAX_DATA_DIR': mnist_data_dir})
  assert result.returncode == 2
  [line] = result.stderr.strip().splitlines()
  assert re.fullmatch(
      f'fajax: error: workdir {tmp_path} is in use by the run of host {socket.gethostname()}, '
      rf'process {os.getpid()} \(its lock, {tmp_path}/lock, was renewed \d+ s ago\); wait for it '
      'to end or use another workdir. A run that is gone without releasing it is taken over 300 '
      's after its last renewal, or delete the lock by hand', line), line
  assert not (tmp_path / 'checkpoints').exists()


def test_a_half_written_lock_is_refused_while_fresh_and_taken_over_once_old(tmp_path):
  path = tmp_path / 'lock'
  path.write_text('{"host": ')  # a crash between creating the lock and writing it
  with pytest.raises(WorkdirInUse, match='in use by the run of host \\?'):
    workdir_lock.acquire(str(tmp_path), print)
  os.utime(path, (time.time() - workdir_lock.STALE_SECONDS - 60,) * 2)
  said = []
  workdir_lock.acquire(str(tmp_path), said.append)
  assert len(said) == 1 and json.loads(path.read_text())['pid'] == os.getpid()
