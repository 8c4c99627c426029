"""Where the metrics go (`config.trackers`): W&B (offline) and MLflow (a local file store) beside
metrics.jsonl, a run per replica that a resumed run continues without duplicates; the choice
of trackers and its errors."""

import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys

import pytest
from flax import nnx

import fajax
from fajax import trackers
from fajax.errors import ConfigError
from fajax.experiment import validate_config
from tests.fixtures import TinyMLP, tiny_config, tiny_data

REPO = pathlib.Path(__file__).resolve().parent.parent
LOGGED_STEPS = [2, 4, 6, 8, 10, 12]


@pytest.fixture(scope='module')
def tracked_run(tmp_path_factory):
  """A sweep of 2 learning rates logged to metrics.jsonl, W&B and MLflow; killed after logging
  step 8 but before its checkpoint, then resumed from step 4 and trained on to step 12."""
  root = tmp_path_factory.mktemp('tracked')
  workdir = root / 'sweep_run'
  with pytest.MonkeyPatch.context() as env:
    env.setenv('WANDB_MODE', 'offline')
    env.setenv('WANDB_DIR', str(root))
    env.setenv('WANDB_SILENT', 'true')
    env.delenv('WANDB_PROJECT', raising=False)
    env.setenv('MLFLOW_TRACKING_URI', (root / 'mlruns').as_uri())
    env.setenv('MLFLOW_ALLOW_FILE_STORE', 'true')  # MLflow 3 asks for a database otherwise
    # A constant learning rate: the steps the resume redoes log the same numbers, also when it
    # trains on further than the first run.
    config = tiny_config('fa', lr_schedule='constant', trackers=('jsonl', 'wandb', 'mlflow'))
    config.sweep.learning_rate = (0.05, 0.1)
    fajax.train(config, str(workdir), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
    shutil.rmtree(workdir / 'checkpoints' / '8')
    config.num_train_steps = 12
    fajax.train(config, str(workdir), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  jsonl = {}  # replica → step → record
  for line in (workdir / 'metrics.jsonl').read_text().splitlines():
    record = json.loads(line)
    jsonl.setdefault(record['replica'], {})[record['step']] = record
  return root, workdir, jsonl


def _wandb_records(path: pathlib.Path):
  """The records of a W&B run's log (`run-<id>.wandb`): after a 7-byte header, chunks of a
  protobuf `Record` (crc32, uint16 length, type: 1 whole, 2 first, 3 middle, 4 last) in
  32 KiB blocks, whose tails too short for a chunk header are padding."""
  from wandb.proto import wandb_internal_pb2  # pylint: disable=g-import-not-at-top

  data, block, offset, pending = path.read_bytes(), 32 * 1024, 7, b''
  while offset + 7 <= len(data):
    if block - offset % block < 7:
      offset += block - offset % block
      continue
    length, kind = struct.unpack('<HB', data[offset + 4:offset + 7])
    pending += data[offset + 7:offset + 7 + length]
    offset += 7 + length
    if kind in (1, 4):
      yield wandb_internal_pb2.Record.FromString(pending)
      pending = b''


def _wandb_runs(root: pathlib.Path) -> dict:
  """run id → its config, group and every history row logged, across the offline folders of
  the run's sessions."""
  runs = {}
  for path in sorted(root.glob('wandb/offline-run-*/run-*.wandb')):
    for record in _wandb_records(path):
      kind = record.WhichOneof('record_type')
      if kind == 'run':
        run = runs.setdefault(record.run.run_id, {'sessions': 0, 'history': []})
        run['sessions'] += 1
        run['group'] = record.run.run_group
        run['config'] = {item.key: json.loads(item.value_json)
                         for item in record.run.config.update}
      elif kind == 'history':
        # W&B keeps a key with '/' as its parts.
        run['history'].append({item.key or '/'.join(item.nested_key): json.loads(item.value_json)
                               for item in record.history.item})
  return runs


def test_wandb_shows_each_replica_as_a_run_that_the_resume_continues(tracked_run):
  root, workdir, jsonl = tracked_run
  run_ids = json.loads((workdir / 'wandb_runs.json').read_text())['run_ids']
  runs = _wandb_runs(root)
  assert sorted(runs) == sorted(run_ids.values())
  for replica, learning_rate in ((0, 0.05), (1, 0.1)):
    run = runs[run_ids[str(replica)]]
    assert run['sessions'] == 2 and run['group'] == 'sweep_run'
    assert (run['config']['replica'], run['config']['seed'], run['config']['learning_rate'],
            run['config']['method']) == (replica, 0, learning_rate, 'fa')
    assert [row['_step'] for row in run['history']] == LOGGED_STEPS
    for row in run['history']:
      logged = jsonl[replica][row['_step']]
      assert row['train/loss'] == pytest.approx(logged['train/loss'])
      assert row.get('eval/top1_error') == pytest.approx(logged.get('eval/top1_error'))
      assert 'hparams/learning_rate' not in row and 'seed' not in row


def test_mlflow_shows_each_replica_as_a_run_of_the_workdirs_experiment(tracked_run):
  from mlflow.tracking import MlflowClient  # pylint: disable=g-import-not-at-top

  root, workdir, jsonl = tracked_run
  client = MlflowClient((root / 'mlruns').as_uri())
  run_ids = json.loads((workdir / 'mlflow_runs.json').read_text())['run_ids']
  experiment = client.get_experiment_by_name('sweep_run')
  runs = client.search_runs([experiment.experiment_id])
  assert sorted(run.info.run_id for run in runs) == sorted(run_ids.values())
  for replica, learning_rate in ((0, '0.05'), (1, '0.1')):
    run = client.get_run(run_ids[str(replica)])
    assert run.info.run_name == f'replica_{replica}' and run.info.status == 'FINISHED'
    params = run.data.params
    assert (params['replica'], params['seed'], params['learning_rate'],
            params['mirror.decay']) == (str(replica), '0', learning_rate, '1.0')
    history = client.get_metric_history(run.info.run_id, 'train/loss')
    assert [m.step for m in history] == LOGGED_STEPS
    assert [m.value for m in history] == pytest.approx(
        [jsonl[replica][step]['train/loss'] for step in LOGGED_STEPS])
    evaluated = client.get_metric_history(run.info.run_id, 'eval/top1_error')
    assert [(m.step, m.value) for m in evaluated] == [
        (step, pytest.approx(jsonl[replica][step]['eval/top1_error'])) for step in (4, 8, 12)]


def test_a_bad_mlflow_store_is_a_config_error(tmp_path, monkeypatch):
  monkeypatch.setenv('MLFLOW_TRACKING_URI', (tmp_path / 'mlruns').as_uri())
  monkeypatch.delenv('MLFLOW_ALLOW_FILE_STORE', raising=False)
  with pytest.raises(ConfigError, match=r"^MLflow cannot use the tracking store 'file:.*' \(.*"
                     r'MLFLOW_ALLOW_FILE_STORE.*\); set MLFLOW_TRACKING_URI to your MLflow server'):
    trackers.create(tiny_config(trackers=('mlflow',)), str(tmp_path))


def test_a_default_run_imports_no_optional_tracker(tmp_path, monkeypatch):
  # Importing fajax imports neither, in a fresh interpreter (this one's other tests import them),
  # nor IPython, which flax.nnx would import for nothing (fajax/__init__.py)…
  imported = subprocess.run(
      [sys.executable, '-c', 'import sys, fajax, fajax.loop; '
       'print(sorted({"wandb", "mlflow", "IPython"} & set(sys.modules)))'],
      cwd=REPO, capture_output=True, text=True, check=True).stdout
  assert imported == '[]\n'
  # … nor does a run: importing either now raises ImportError.
  for package in ('wandb', 'mlflow'):
    monkeypatch.setitem(sys.modules, package, None)
  fajax.train(tiny_config('fa', num_train_steps=2), str(tmp_path),
              model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  assert (tmp_path / 'metrics.jsonl').read_text().count('"step": 2') == 1
  assert (tmp_path / 'tensorboard' / 'replica_0').is_dir()
  with pytest.raises(ConfigError, match=r"^config.trackers has 'wandb', but wandb is not "
                     r"installed: pip install 'fajax\[wandb\]'$"):
    validate_config(tiny_config(trackers=('jsonl', 'wandb')), model_given=True, data_given=True)


def test_tensorboard_events_are_written_without_importing_torch(tmp_path):
  # A torch whose import fails loudly (not with ImportError, which tensorboardX would take for
  # "not installed"), on the path of a fresh interpreter that writes TensorBoard events.
  (tmp_path / 'torch').mkdir()
  (tmp_path / 'torch' / '__init__.py').write_text('raise RuntimeError("torch was imported")')
  script = ('from fajax import trackers; '
            f'tracker = trackers.TensorBoardTracker({str(tmp_path / "run")!r}); '
            'tracker.write(1, [{"replica": 0, "train/loss": 0.5}]); tracker.close(); '
            'import torch')
  result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, 'PYTHONPATH': str(tmp_path)})
  # The events are written; the caller's own `import torch` afterwards still finds torch.
  assert 'RuntimeError: torch was imported' in result.stderr.splitlines()[-1], result.stderr
  assert 'tensorboardX' not in result.stderr
  [events] = (tmp_path / 'run' / 'tensorboard' / 'replica_0').iterdir()
  assert events.name.startswith('events.out.tfevents.') and events.stat().st_size > 0


@pytest.mark.parametrize('names,error', [
    (('jsonl', 'neptune'), "unknown tracker 'neptune' in config.trackers; choose from: jsonl, "
                           'tensorboard, wandb, mlflow'),
    (('jsonl', 'jsonl'), "config.trackers names 'jsonl' twice; name each tracker once"),
])
def test_trackers_are_known_and_named_once(names, error):
  with pytest.raises(ConfigError, match=f'^{error}$'):
    validate_config(tiny_config(trackers=names), model_given=True, data_given=True)
