"""One real training step of every column through `fajax.main`, on generated or mock data."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.fixtures import write_cifar10

REPO = pathlib.Path(__file__).resolve().parent.parent
ONE_STEP = ['--config.num_train_steps=1', '--config.batch_size=4', '--config.eval_batch_size=4',
            '--config.eval_examples_limit=4']
# The one step is a diagnosed one by default, whose program compiles in twice the time of the
# plain step's. One model with residual blocks and batch norm (ResNet-20) is diagnosed here;
# the others' layers are diagnosed on LeNet-5 (diagnostics_test).
UNDIAGNOSED = ['--config.diagnostics=False']
# Runs fajax.main with TFDS's mock data in place of the real (unavailable) dataset.
UNDER_MOCK_DATA = (
    'import runpy, sys, tensorflow_datasets as tfds\n'
    'sys.argv = ["fajax.main"] + sys.argv[1:]\n'
    'with tfds.testing.mock_data(num_examples=16):\n'
    '  runpy.run_module("fajax.main", run_name="__main__")\n'
)


def _run(args, env):
  return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO,
                        env={**os.environ, **env}, timeout=600)


@pytest.mark.parametrize('experiment,diagnosed', [
    ('cifar10_1_fa_usf_sn', False), ('cifar10_1_dfa', False), ('cifar10_2_bp', True)])
def test_one_step_on_a_cifar10_folder_laid_out_as_the_real_one(experiment, diagnosed, tmp_path):
  write_cifar10(tmp_path / 'data')
  result = _run(['-m', 'fajax.main', f'--config={experiment}', f'--workdir={tmp_path / "run"}',
                 *ONE_STEP, *([] if diagnosed else UNDIAGNOSED)],
                {'FAJAX_DATA_DIR': str(tmp_path / 'data')})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Done at step 1' in result.stdout
  [record] = map(json.loads, (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines())
  assert any(key.startswith('align/') for key in record) == diagnosed


@pytest.mark.parametrize('experiment', ['imagenet1_fa_usf_const_ei', 'imagenet2_fa_usf_sn'])
def test_one_step_on_tfds_mock_imagenet(experiment, tmp_path):
  result = _run(['-c', UNDER_MOCK_DATA, f'--config={experiment}',
                 f'--workdir={tmp_path}', '--config.image_size=64', *ONE_STEP, *UNDIAGNOSED],
                {'FAJAX_DATA_DIR': ''})
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Done at step 1' in result.stdout


def test_densefa_on_the_cifar_convnet_is_refused_under_the_default_budget(tmp_path):
  write_cifar10(tmp_path / 'data')
  result = _run(['-m', 'fajax.main', '--config=cifar10_1_densefa',
                 f'--workdir={tmp_path / "run"}', '--config.direct_feedback_memory_budget_mb=2048',
                 *ONE_STEP], {'FAJAX_DATA_DIR': str(tmp_path / 'data')})
  assert result.returncode == 2
  assert "feedback matrices of cifar_convnet need 8,325.7 MB" in result.stderr
