"""One real training step of every column's config through `fajax.train`, the library call
behind `fajax.main` (whose command line main_test runs), on generated or mock data. In this
process: a `fajax.main` process would first spend seconds importing what is loaded here."""

import json

import pytest

import fajax
from fajax.errors import ConfigError
from tests.fixtures import experiment_config
from tests.fixtures import write_cifar10

ONE_STEP = dict(num_train_steps=1, batch_size=4, eval_batch_size=4, eval_examples_limit=4)


def _config(experiment, diagnosed=False, **fields):
  """The experiment's config for one step, diagnosed only where `diagnosed`: a diagnosed step's
  program compiles in twice the plain one's time, so one model with residual blocks and batch
  norm (ResNet-20) is diagnosed here; the others' layers are diagnosed on LeNet-5
  (diagnostics_test)."""
  return experiment_config(experiment, **ONE_STEP, diagnostics=diagnosed, **fields)


@pytest.mark.parametrize('experiment,diagnosed', [
    ('cifar10_1_fa_usf_sn', False), ('cifar10_1_dfa', False), ('cifar10_2_bp', True)])
def test_one_step_on_a_cifar10_folder_laid_out_as_the_real_one(experiment, diagnosed, tmp_path,
                                                              monkeypatch):
  write_cifar10(tmp_path / 'data')
  monkeypatch.setenv('FAJAX_DATA_DIR', str(tmp_path / 'data'))
  metrics = fajax.train(_config(experiment, diagnosed), str(tmp_path / 'run'))
  assert metrics['step'] == 1
  [record] = map(json.loads, (tmp_path / 'run' / 'metrics.jsonl').read_text().splitlines())
  assert any(key.startswith('align/') for key in record) == diagnosed


@pytest.mark.parametrize('experiment', ['imagenet1_fa_usf_const_ei', 'imagenet2_fa_usf_sn'])
def test_one_step_on_tfds_mock_imagenet(experiment, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  monkeypatch.setenv('FAJAX_DATA_DIR', '')
  with tfds.testing.mock_data(num_examples=16):
    metrics = fajax.train(_config(experiment, image_size=64), str(tmp_path))
  assert metrics['step'] == 1


def test_densefa_on_the_cifar_convnet_is_refused_under_the_default_budget(tmp_path,
                                                                        monkeypatch):
  write_cifar10(tmp_path / 'data')
  monkeypatch.setenv('FAJAX_DATA_DIR', str(tmp_path / 'data'))
  config = _config('cifar10_1_densefa', direct_feedback_memory_budget_mb=2048)
  with pytest.raises(ConfigError, match='feedback matrices of cifar_convnet need 8,325.7 MB'):
    fajax.train(config, str(tmp_path / 'run'))
