"""Faults a user meets: divergence, bad command lines, damaged checkpoints."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import fajax
from fajax.errors import DivergenceError
from tests.fixtures import config_flags
from tests.fixtures import experiment_config

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL = dict(train_examples_limit=2048, eval_examples_limit=256)
# Runs whose subject is not the alignment measures skip the diagnosed step, whose program
# compiles in about twice the time of the plain step's.
UNDIAGNOSED = dict(diagnostics=False)


def _config(experiment, **fields):
  return experiment_config(experiment, **SMALL, **UNDIAGNOSED, **fields)


def _cli(workdir, *args, data_dir=''):
  return subprocess.run(
      [sys.executable, '-m', 'fajax.main', f'--workdir={workdir}', *args],
      capture_output=True, text=True, cwd=REPO, timeout=600,
      env={**os.environ, 'FAJAX_DATA_DIR': data_dir})


def test_divergence_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path, mnist_data_dir, monkeypatch):
  # In this process: the command prints the error's message as one line (the tests above).
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  with pytest.raises(DivergenceError) as raised:
    fajax.train(_config('mnist_fa', learning_rate=1e4, num_train_steps=200,
                        checkpoint_every_steps=2, log_every_steps=2), str(tmp_path))
  [line] = str(raised.value).splitlines()
  assert line.startswith('training diverged at step ')
  diverged = int(line.split('at step ')[1].split(':')[0])
  kept = sorted(int(s) for s in os.listdir(tmp_path / 'checkpoints'))
  assert kept and max(kept) < diverged
  assert f'the last good checkpoint (step {max(kept)}) is kept' in line
  # It names where the forward pass first overflowed: a layer's output or the logits.
  assert 'NaN or Inf in the output of ' in line or 'NaN or Inf in the logits' in line
  with open(tmp_path / 'metrics.jsonl') as f:
    steps = [json.loads(l)['step'] for l in f]
  assert max(steps) < diverged  # nothing of the diverged steps was logged


# A flag the parser refuses, and a config that `validate_config` refuses (its other messages:
# experiment_test, in-process).
@pytest.mark.parametrize('override,expected', [
    ('--config.num_epoch=1', 'no such config field: num_epoch Did you mean "num_epochs"'),
    ('--config.batch_size=abc', "flag --config.batch_size=abc: invalid literal for int()"),
    ('--config.method=backprop', "unknown method 'backprop'; choose one of: bp, "),
])
def test_bad_config_is_one_line_exit_2(override, expected, tmp_path):
  result = _cli(tmp_path, '--config=mnist_bp', override)
  assert result.returncode == 2, result.stderr
  [line] = result.stderr.strip().splitlines()
  assert line.startswith('fajax: error: ') and expected in line


def test_a_model_that_cannot_take_the_data_is_one_line_exit_2(tmp_path, mnist_data_dir):
  result = _cli(tmp_path, '--config=mnist_bp', '--config.model=resnet20',
                data_dir=mnist_data_dir)
  assert result.returncode == 2
  [line] = result.stderr.strip().splitlines()
  assert 'model resnet20 takes 32×32×3 inputs but the dataset gives 32×32×1' in line


def test_missing_data_directory_through_the_cli(tmp_path):
  result = _cli(tmp_path, '--config=cifar10_1_bp', data_dir=str(tmp_path))
  assert result.returncode == 2
  [line] = result.stderr.strip().splitlines()
  # The tests' $FAJAX_DATA_MIRROR refuses connections (conftest.py): the download fails.
  assert 'cannot download cifar-10-python.tar.gz: http://127.0.0.1:' in line
  assert f'Put the file into {tmp_path}/cifar10/ by hand' in line


def test_missing_config_file_is_one_line_exit_2(tmp_path):
  result = _cli(tmp_path, '--config=configs/mnist_nothing.py')
  assert result.returncode == 2
  [line] = result.stderr.strip().splitlines()
  assert 'cannot load --config' in line and 'mnist_nothing.py' in line


# The failed read of the damaged checkpoint leaves a TensorStore callback that later finds
# Orbax's event loop closed; Python reports it as an ignored exception.
@pytest.mark.filterwarnings('ignore::pytest.PytestUnraisableExceptionWarning')
def test_damaged_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, mnist_data_dir,
                                                                 monkeypatch, capsys):
  # In this process, whose second run reuses the first's compiled programs.
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  run = lambda: fajax.train(
      _config('mnist_bp', num_train_steps=20, checkpoint_every_steps=10, log_every_steps=10),
      str(tmp_path))
  first = run()
  for path in (tmp_path / 'checkpoints' / '20').rglob('*'):
    if path.is_file() and path.parent.name == 'd':
      path.write_bytes(path.read_bytes()[:20])
  capsys.readouterr()
  again = run()
  printed = capsys.readouterr().out
  assert 'warning: the checkpoint at step 20 cannot be read' in printed
  assert 'Resumed from the checkpoint at step 10' in printed
  # The same result as never damaged.
  assert (again['eval/loss'], again['eval/top1_error']) == (first['eval/loss'],
                                                            first['eval/top1_error'])


def test_a_dead_process_stops_the_others(tmp_path, mnist_data_dir):
  import time  # pylint: disable=g-import-not-at-top

  workdir = tmp_path / 'run'
  launcher = subprocess.Popen(
      # Its log (every 5 steps) is the sign that training runs.
      ['bash', 'launch/local.sh', '2', '1', '--', '--config=mnist_bp', f'--workdir={workdir}',
       *config_flags({**SMALL, **UNDIAGNOSED, 'num_train_steps': 100000, 'log_every_steps': 5})],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      env={**os.environ, 'FAJAX_DATA_DIR': mnist_data_dir,
           'FAJAX_LAUNCH_LOGS': str(tmp_path / 'logs')})
  deadline = time.time() + 120
  while not (workdir / 'metrics.jsonl').exists() and time.time() < deadline:
    time.sleep(0.5)
  assert (workdir / 'metrics.jsonl').exists(), 'training never started'
  subprocess.run(['pkill', '-KILL', '-f', f'workdir={workdir} .*--process_id=1'], check=True)
  started = time.time()
  _, stderr = launcher.communicate(timeout=60)
  assert time.time() - started < 60
  assert launcher.returncode != 0
  assert 'a process failed' in stderr
  assert subprocess.run(['pgrep', '-f', f'workdir={workdir}'], capture_output=True).returncode == 1
