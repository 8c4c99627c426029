"""A run's folder: config.json with the caller's objects, resuming, and the metrics log."""

import json
import shutil

import pytest
from flax import nnx

import fajax
from fajax import trackers
from fajax.configs import common
from fajax.errors import ConfigError
from fajax.workdir import MetricsLog
from tests.fixtures import TinyMLP, tiny_config, tiny_data


def _train(workdir, model, **overrides):
  return fajax.train(tiny_config('fa', **overrides), str(workdir), model=model,
                     data=tiny_data())


def test_a_caller_model_run_records_it_and_resumes_only_with_a_model_of_its_shapes(
    tmp_path, capsys):
  first = _train(tmp_path, TinyMLP(rngs=nnx.Rngs(0)))
  record = json.loads((tmp_path / 'config.json').read_text())
  assert record['caller_objects'] == {'model': 'tests.fixtures.TinyMLP',
                                      'data': 'fajax.datasets.base.InMemoryDataset'}
  assert record['method'] == 'fa' and record['model'] == ''

  with pytest.raises(ConfigError, match=r"trained a caller's model \(tests.fixtures.TinyMLP\); "
                     r'pass the same model= to fajax.train to resume it'):
    fajax.train(tiny_config('fa', num_train_steps=12), str(tmp_path), data=tiny_data())
  with pytest.raises(ConfigError, match=r'the checkpoint at step 8 in .* holds '
                     r'params/fc1/bias of shape \(16,\), but this run\'s model has '
                     r'\(32,\): resume with the model that wrote it'):
    _train(tmp_path, TinyMLP(hidden=32, rngs=nnx.Rngs(0)), num_train_steps=12)

  with pytest.raises(ConfigError, match=r'the checkpoint at step 8 in .* holds 1 replicas, but '
                     r'this run has 2: resume with the same replicas and sweep'):
    _train(tmp_path, TinyMLP(rngs=nnx.Rngs(0)), num_train_steps=12, replicas=2)

  capsys.readouterr()
  resumed = _train(tmp_path, TinyMLP(rngs=nnx.Rngs(5)), num_train_steps=12)
  assert 'Resumed from the checkpoint at step 8' in capsys.readouterr().out
  assert resumed['step'] == 12 and first['step'] == 8


def test_a_config_model_run_does_not_resume_with_a_caller_model(tmp_path):
  config = tiny_config('fa')
  fajax.train(config, str(tmp_path), data=tiny_data(), model=TinyMLP(rngs=nnx.Rngs(0)))
  record = json.loads((tmp_path / 'config.json').read_text())
  record['caller_objects'].pop('model')  # as if the config had named the model
  (tmp_path / 'config.json').write_text(json.dumps(record))
  with pytest.raises(ConfigError, match="trained the config's model, not a caller's; resume "
                     'it without model='):
    _train(tmp_path, TinyMLP(rngs=nnx.Rngs(0)), num_train_steps=12)


def test_metrics_log_drops_lines_past_a_step_and_appends(tmp_path):
  log = MetricsLog(trackers.create(common.get_config(), str(tmp_path)))  # the default trackers
  for step in (10, 20, 30):
    log.write(step, [{'replica': r, 'train/loss': step / 10 + r} for r in (0, 1)])
  log.rewind(20)
  log.write(30, [{'replica': 0, 'train/loss': 9.0}])
  log.close()
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert lines == [{'step': 10, 'replica': 0, 'train/loss': 1.0},
                   {'step': 10, 'replica': 1, 'train/loss': 2.0},
                   {'step': 20, 'replica': 0, 'train/loss': 2.0},
                   {'step': 20, 'replica': 1, 'train/loss': 3.0},
                   {'step': 30, 'replica': 0, 'train/loss': 9.0}]
  # TensorBoard: each replica is a run of its own.
  assert sorted(p.name for p in (tmp_path / 'tensorboard').iterdir()) == ['replica_0',
                                                                          'replica_1']


def test_a_run_of_replicas_resumes_to_the_uninterrupted_result(tmp_path):
  sweep = dict(learning_rate=(0.05, 0.2))
  make = lambda: TinyMLP(rngs=nnx.Rngs(0))
  full = _train(tmp_path, make(), replicas=2, sweep=sweep)
  log = (tmp_path / 'metrics.jsonl').read_text()
  assert {json.loads(line)['replica'] for line in log.splitlines()} == {0, 1, 2, 3}
  shutil.rmtree(tmp_path / 'checkpoints' / '8')  # as if killed between steps 4 and 8
  resumed = _train(tmp_path, make(), replicas=2, sweep=sweep)
  assert resumed == full
  assert (tmp_path / 'metrics.jsonl').read_text() == log
