"""Weights out (`fajax.export`) and in (`config.init_from`), on LeNet-5 and a slice of MNIST."""

import functools
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy
from safetensors import safe_open

import fajax
from fajax import export
from fajax import weights_file
from fajax.configs import mnist
from fajax.datasets import mnist as mnist_data
from fajax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent
LENET_WEIGHTS = [f'{layer}/{leaf}' for layer in ('conv1', 'conv2', 'conv3', 'fc1', 'fc2')
                 for leaf in ('bias', 'kernel')]


def _config(method, data_dir, **overrides):
  """A few steps of the MNIST protocol on its first 256 training images."""
  config = mnist.get_config(method)
  config.update(data_dir=data_dir, train_examples_limit=256, eval_examples_limit=100,
                eval_batch_size=100, num_train_steps=4, log_every_steps=2, steps_per_call=1,
                diagnostics=False, **overrides)
  return config


@pytest.fixture(scope='module')
def run(mnist_data_dir, tmp_path_factory):
  """The workdir of a finished FA run of 2 replicas (seeds 0 and 1)."""
  workdir = tmp_path_factory.mktemp('fa_run')
  fajax.train(_config('fa', mnist_data_dir, replicas=2), str(workdir))
  return workdir


def _replica_tensors(state, replica):
  one = jax.tree.map(lambda x: np.asarray(x)[replica], jax.device_get(state))
  return weights_file.named_tensors(weights_file.NetworkWeights(
      one.params, one.feedback, one.error_feedback, one.model_state))


def test_a_new_run_of_any_replica_count_starts_from_the_exported_w_and_b(
    run, mnist_data_dir, tmp_path):
  path = tmp_path / 'fa.safetensors'
  metadata = export.export(str(run), str(path), replica=1)
  with safe_open(str(path), 'np') as f:
    assert f.metadata() == metadata
  assert {k: metadata[k] for k in ('method', 'model', 'dataset', 'step', 'replica', 'seed')} == {
      'method': 'fa', 'model': 'lenet5', 'dataset': 'mnist', 'step': '4', 'replica': '1',
      'seed': '1'}
  assert float(metadata['hparams/learning_rate']) == 1e-3
  assert json.loads(metadata['config'])['replicas'] == 2
  tensors = safetensors.numpy.load_file(str(path))
  assert sorted(tensors) == sorted(
      LENET_WEIGHTS + [f'feedback/{layer}/kernel' for layer in ('conv1', 'conv2', 'conv3',
                                                                'fc1', 'fc2')])
  export.export(str(run), str(tmp_path / 'replica_0.safetensors'))
  replica_0 = safetensors.numpy.load_file(str(tmp_path / 'replica_0.safetensors'))
  assert not np.array_equal(tensors['conv1/kernel'], replica_0['conv1/kernel'])
  with pytest.raises(ConfigError, match=r'has no replica 2: it has 2 \(0 to 1\); choose one '
                     'with --replica'):
    export.export(str(run), str(tmp_path / 'replica_2.safetensors'), replica=2)

  experiment = fajax.build(_config('fa', mnist_data_dir, replicas=3, init_from=str(path)))
  for replica in range(3):
    started = _replica_tensors(experiment.state, replica)
    assert started.keys() == tensors.keys()
    for name, value in tensors.items():
      np.testing.assert_array_equal(started[name], value, err_msg=name)


def _readme_recipe() -> str:
  """The README's loading recipe, fenced `py` (not `python`: experiment_test runs every
  `python` block as is, and this one needs an exported file)."""
  readme = (REPO / 'README.md').read_text()
  section = readme.split('## Weights out and in', 1)[1]
  return re.search(r'```py\n(.*?)```', section, re.DOTALL).group(1)


def test_a_plain_flax_module_loaded_by_the_readme_recipe_gives_fajax_logits(
    run, mnist_data_dir, tmp_path, monkeypatch):
  export.export(str(run), str(tmp_path / 'mnist_fa.safetensors'))
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(_readme_recipe(), 'README.md', 'exec'), namespace)  # pylint: disable=exec-used

  # BP computes B from W: the file's B is left out, its W and biases are the start.
  experiment = fajax.build(_config('bp', mnist_data_dir, init_from='mnist_fa.safetensors'))
  started = _replica_tensors(experiment.state, 0)
  for layer in ('conv1', 'fc2'):
    np.testing.assert_array_equal(started[f'feedback/{layer}/kernel'],
                                  started[f'{layer}/kernel'])
  images = np.random.default_rng(0).integers(0, 256, (16, 28, 28, 1), np.uint8)
  one = jax.tree.map(lambda x: x[0], experiment.state)
  logits, _ = jax.jit(functools.partial(experiment.model.apply, train=False))(
      one, one.params, images)
  np.testing.assert_allclose(namespace['model'](mnist_data.preprocess(images)), logits,
                             rtol=1e-5, atol=1e-5)


def test_a_file_that_does_not_fit_the_model_is_one_config_error(run, mnist_data_dir, tmp_path):
  export.export(str(run), str(tmp_path / 'fa.safetensors'))
  tensors = safetensors.numpy.load_file(str(tmp_path / 'fa.safetensors'))

  def build_from(changed):
    weights_file.write(str(tmp_path / 'changed.safetensors'), changed, {})
    fajax.build(_config('fa', mnist_data_dir, init_from=str(tmp_path / 'changed.safetensors')))

  with pytest.raises(ConfigError, match=re.escape(
      "config.init_from holds fc2/kernel of shape (84, 5), but this run's model has (84, 10): "
      'give a file exported from a run of this model')):
    build_from({**tensors, 'fc2/kernel': tensors['fc2/kernel'][:, :5]})
  with pytest.raises(ConfigError, match="config.init_from has no fc1/bias, which this run's "
                     'model has'):
    build_from({k: v for k, v in tensors.items() if k != 'fc1/bias'})
  with pytest.raises(ConfigError, match="config.init_from holds fc3/kernel, which this run's "
                     'model has not'):
    build_from({**tensors, 'fc3/kernel': tensors['fc2/kernel']})
  with pytest.raises(ConfigError, match=r'config.init_from: no file .*nothing.safetensors; '
                     'give a .safetensors file written by fajax export'):
    fajax.build(_config('fa', mnist_data_dir, init_from=str(tmp_path / 'nothing.safetensors')))


def test_a_resumed_run_ignores_init_from_and_ends_as_the_uninterrupted_run(
    run, mnist_data_dir, tmp_path):
  start = tmp_path / 'start.safetensors'
  export.export(str(run), str(start))
  workdir = tmp_path / 'fine_tune'
  # The fixture's replicas and steps: its compiled programs serve here too.
  config = _config('fa', mnist_data_dir, init_from=str(start), replicas=2,
                   checkpoint_every_steps=2)
  full = fajax.train(config, str(workdir))
  log = (workdir / 'metrics.jsonl').read_text()
  shutil.rmtree(workdir / 'checkpoints' / '4')  # as if killed between steps 2 and 4
  os.remove(start)  # the checkpoint at step 2 is where the run goes on from
  assert fajax.train(config, str(workdir)) == full
  assert (workdir / 'metrics.jsonl').read_text() == log


def _export_command(*flags):
  return subprocess.run([sys.executable, '-m', 'fajax.export', *flags], capture_output=True,
                        text=True, cwd=REPO, timeout=600)


def test_the_command_writes_the_file_or_says_in_one_line_why_not(run, tmp_path):
  written = _export_command(f'--workdir={run}', f'--out={tmp_path / "r1.safetensors"}',
                            '--replica=1')
  assert written.returncode == 0, written.stderr
  assert 'replica 1 (seed 1) of fa lenet5 at step 4' in written.stdout
  with safe_open(str(tmp_path / 'r1.safetensors'), 'np') as f:
    assert f.metadata()['replica'] == '1'

  not_yet = tmp_path / 'not_yet'
  not_yet.mkdir()
  shutil.copy(run / 'config.json', not_yet / 'config.json')  # killed before its 1st checkpoint
  failed = _export_command(f'--workdir={not_yet}', f'--out={tmp_path / "x.safetensors"}')
  assert failed.returncode == 2
  assert failed.stderr.strip().splitlines() == [
      f'fajax: error: the run in {not_yet} has no checkpoint yet; export it once it has saved '
      'one (every config.checkpoint_every_steps steps, and at its end)']
  assert not (tmp_path / 'x.safetensors').exists()
