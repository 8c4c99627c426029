"""Data-parallel training: 1 device, 4 simulated devices and 2 processes × 2 devices agree."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fajax
from tests.fixtures import config_flags
from tests.fixtures import experiment_config

REPO = pathlib.Path(__file__).resolve().parent.parent
# Without the alignment measures, whose diagnosed step compiles in about twice the plain one's
# time: only the 4-device DFA run measures them, on several devices.
SMALL = dict(train_examples_limit=2048, eval_examples_limit=512, batch_size=32,
             eval_batch_size=128, log_every_steps=1, diagnostics=False)


def _env(devices, data_dir):
  return {**os.environ, 'FAJAX_DATA_DIR': data_dir,
          'XLA_FLAGS': f"{os.environ.get('XLA_FLAGS', '')} "
                       f'--xla_force_host_platform_device_count={devices}'}


def _main(config, workdir, devices, data_dir, **fields):
  return subprocess.run(
      [sys.executable, '-m', 'fajax.main', f'--config={config}',
       f'--workdir={workdir}', *config_flags({**SMALL, **fields})],
      capture_output=True, text=True, cwd=REPO, env=_env(devices, data_dir), timeout=600)


def _one_device(config_name, workdir, data_dir, monkeypatch, **fields):
  """`_main` on 1 device, run in this process (the suite's processes have one CPU device): its
  final metrics."""
  monkeypatch.setenv('FAJAX_DATA_DIR', data_dir)
  return fajax.train(experiment_config(config_name, **{**SMALL, **fields}), str(workdir))


def _launch(config, workdir, processes, devices, data_dir, **fields):
  env = {**_env(1, data_dir), 'FAJAX_LAUNCH_LOGS': str(workdir) + '_logs'}
  return subprocess.run(
      ['bash', 'launch/local.sh', str(processes), str(devices), '--',
       f'--config={config}', f'--workdir={workdir}', *config_flags({**SMALL, **fields})],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def _curve(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    lines = [json.loads(line) for line in f]
  return np.array([l['train/loss'] for l in lines]), lines[-1]['eval/loss']


# uSF SN covers the rules' state under sharding (BP's B = W is its special case without
# signs) across processes, DFA the error-feedback matrices over one process's devices.
@pytest.mark.parametrize('config,layout', [('mnist_fa_usf_sn', '2 processes x 2 devices'),
                                           ('mnist_dfa', '4 devices')])
def test_same_loss_curve_on_1_device_as_on_4(config, layout, tmp_path, mnist_data_dir,
                                              monkeypatch):
  # The sharded run also takes two steps per call (a stack of batches split over the devices
  # on its second axis), logging the mean loss of every 5 steps.
  stacked = dict(num_train_steps=20, steps_per_call=2, log_every_steps=5)
  if layout == '4 devices':
    sharded = _main(config, tmp_path / 'sharded', 4, mnist_data_dir, **stacked,
                    diagnostics=True)
  else:
    sharded = _launch(config, tmp_path / 'sharded', 2, 2, mnist_data_dir, **stacked)
  assert sharded.returncode == 0, f'{layout}: {sharded.stderr[-2000:]}'
  _one_device(config, tmp_path / 'one', mnist_data_dir, monkeypatch, num_train_steps=20)
  reference, reference_eval = _curve(tmp_path / 'one')
  assert len(reference) == 20
  curve, eval_loss = _curve(tmp_path / 'sharded')
  np.testing.assert_allclose(curve, reference.reshape(4, 5).mean(1), rtol=2e-3)
  np.testing.assert_allclose(eval_loss, reference_eval, rtol=2e-3)
  if layout != '4 devices':
    # Process 1 trained too, silently: only process 0 writes the log.
    assert 'Done at step 20' in sharded.stdout
    assert 'Done at step' not in (tmp_path / 'sharded_logs' / 'process_1.log').read_text()


@pytest.mark.parametrize('save_devices,resume_devices', [(4, 1), (1, 4)])
def test_checkpoint_restores_on_another_device_count(save_devices, resume_devices, tmp_path,
                                                     mnist_data_dir, monkeypatch, capsys):
  def run(devices):
    """The run's final test loss and what it printed, on `devices` (1: in this process)."""
    if devices == 1:
      loss = _one_device('mnist_fa_usf_sn', tmp_path, mnist_data_dir, monkeypatch,
                         num_train_steps=10)['eval/loss']
      return float(loss), capsys.readouterr().out
    result = _main('mnist_fa_usf_sn', tmp_path, devices, mnist_data_dir, num_train_steps=10)
    assert result.returncode == 0, result.stderr[-2000:]
    return float(result.stdout.strip().splitlines()[-1].rsplit('test loss ', 1)[1]), result.stdout

  saved_loss, _ = run(save_devices)
  resumed_loss, printed = run(resume_devices)
  assert 'Resumed from the checkpoint at step 10' in printed
  # The restored state evaluates to the saved run's final result.
  assert resumed_loss == pytest.approx(saved_loss, rel=1e-4)


def test_batch_size_that_does_not_divide_the_devices_fails_at_start(tmp_path, mnist_data_dir):
  result = _main('mnist_bp', tmp_path, 4, mnist_data_dir, batch_size=30)
  assert result.returncode == 2
  assert result.stderr.strip().splitlines()[-1] == (
      'fajax: error: batch_size=30 does not divide evenly over 4 devices; use a multiple of 4')


def test_large_parameters_are_split_over_the_batch_axis_on_request():
  import jax  # pylint: disable=g-import-not-at-top
  from jax.sharding import PartitionSpec as P  # pylint: disable=g-import-not-at-top

  from fajax import sharding  # pylint: disable=g-import-not-at-top

  mesh = sharding.make_mesh()
  # Leaves of a train state: a leading replica axis, never split.
  leaves = {'big': jax.ShapeDtypeStruct((4, 1024, 512), np.float32),
            'small': jax.ShapeDtypeStruct((4, 84, 10), np.float32)}
  split = sharding.state_shardings(mesh, leaves, shard_large_params=True)
  assert split['big'].spec == P(None, sharding.BATCH_AXIS) and split['small'].spec == P()
  kept = sharding.state_shardings(mesh, leaves, shard_large_params=False)
  assert kept['big'].spec == P()


@pytest.mark.slow  # three 2-process runs: about 2 minutes on 2 cores
def test_a_sigterm_stops_every_process_at_one_step_and_the_run_resumes_bit_for_bit(
    tmp_path, mnist_data_dir):
  args = ['--config=mnist_bp', '--config.num_train_steps=60',
          '--config.log_every_steps=20', '--config.checkpoint_every_steps=20']
  run = lambda name, fault='': subprocess.run(
      ['bash', 'launch/local.sh', '2', '1', '--', *args, f'--workdir={tmp_path / name}',
       *config_flags(SMALL)],
      capture_output=True, text=True, cwd=REPO, timeout=600,
      env={**_env(1, mnist_data_dir), 'FAJAX_FAULT': fault,
           'FAJAX_LAUNCH_LOGS': str(tmp_path / f'{name}_logs')})
  # Both processes signal themselves; JAX's coordination service picks one call for both.
  stopped = run('stopped', 'term@step:30')
  assert stopped.returncode == 75, stopped.stderr[-2000:]
  [step] = {int(line.split('at step ')[1].split(',')[0])
            for text in (stopped.stderr, (tmp_path / 'stopped_logs' / 'process_1.log').read_text())
            for line in text.splitlines() if line.startswith('fajax: stopped by SIGTERM')}
  assert 30 <= step < 60 and (tmp_path / 'stopped' / 'checkpoints' / str(step)).is_dir()
  resumed = run('stopped')
  assert resumed.returncode == 0 and f'Resumed from the checkpoint at step {step}' in resumed.stdout
  assert run('whole').returncode == 0
  read = lambda name: (tmp_path / name / 'metrics.jsonl').read_text()
  assert read('stopped') == read('whole')
