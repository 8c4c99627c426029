"""Where a run's metrics go (`config.trackers`): metrics.jsonl, TensorBoard, and, as optional
extras, Weights & Biases and MLflow.

    check(config.trackers)               # ConfigError: an unknown name, a package not installed
    trackers = create(config, workdir)   # a tracker's package is imported only here
    tracker.write(step, records); tracker.rewind(step); tracker.close()

A record holds one replica's metrics with its "replica", "seed" and "hparams/...". TensorBoard,
W&B and MLflow show each replica as a run of its own. W&B groups a workdir's runs under the
workdir's name, MLflow keeps them in the experiment of that name, each with the replica's seed
and hyper-parameters in the run's config. Their run ids stay in the workdir, so that a resumed
run goes on in the same runs.
"""

import abc
import importlib.util
import json
import os
import time
from typing import Any

from fajax import lean_import
from fajax.errors import ConfigError

METRICS_FILE = 'metrics.jsonl'
# The package each optional tracker imports; its pip extra has the tracker's name.
_PACKAGES = {'wandb': 'wandb', 'mlflow': 'mlflow'}
# A run's record keys that describe the replica rather than measure it.
_REPLICA_KEYS = ('replica', 'seed')
_HPARAMS = 'hparams/'


class Tracker(abc.ABC):
  """Receives the records of each logging step, in step order; only process 0 has trackers."""

  @abc.abstractmethod
  def write(self, step: int, records: list[dict]) -> None:
    """Writes one record per replica, all of `step`."""

  def rewind(self, step: int) -> None:
    """The run resumes from its checkpoint at `step`: the records after it come again.

    TensorBoard itself drops the steps a restarted run writes again, and W&B and MLflow cannot
    take back what they logged (they skip what they hold instead), so only metrics.jsonl acts.
    """

  def close(self) -> None:
    """Finishes every write."""


class JsonlTracker(Tracker):
  """`metrics.jsonl`: one JSON object per line and replica, with its "step"."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, METRICS_FILE)

  def rewind(self, step: int) -> None:
    """Drops lines a killed run wrote past its last checkpoint, which the resume writes again."""
    if not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    with open(self.path, 'w') as f:
      f.writelines(kept)

  def write(self, step: int, records: list[dict]) -> None:
    with open(self.path, 'a') as f:
      f.writelines(json.dumps({'step': step, **record}) + '\n' for record in records)


class TensorBoardTracker(Tracker):
  """TensorBoard events, one run per replica (`<workdir>/tensorboard/replica_<r>`), written
  through tensorboardX without TensorFlow."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.writers: dict[int, Any] = {}  # replica → its tensorboardX.SummaryWriter

  def write(self, step: int, records: list[dict]) -> None:
    for record in records:
      writer = self._writer(record['replica'])
      # TensorBoard has no run config: a replica's hyper-parameters are scalars of its run.
      for key, value in record.items():
        if key not in _REPLICA_KEYS and isinstance(value, (int, float)):
          writer.add_scalar(key, value, step)
      writer.flush()

  def _writer(self, replica: int):
    if replica not in self.writers:
      # Where torch is installed, tensorboardX imports it only to accept torch tensors, which a
      # run never logs; that import alone costs 2.5–4 s of the command on a 2-core CPU
      # (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
      tensorboardX = lean_import.import_without('tensorboardX', 'torch')
      self.writers[replica] = tensorboardX.SummaryWriter(
          os.path.join(self.workdir, 'tensorboard', f'replica_{replica}'))
    return self.writers[replica]

  def close(self) -> None:
    for writer in self.writers.values():
      writer.close()


def _measured(record: dict) -> dict[str, float]:
  """A record's metrics: its numbers other than the replica's index, seed and hyper-parameters."""
  return {key: float(value) for key, value in record.items()
          if key not in _REPLICA_KEYS and not key.startswith(_HPARAMS)
          and isinstance(value, (int, float))}


class _RunPerReplica(Tracker):
  """A tracking service that shows each replica as a run and cannot take back what it logged.

  `<workdir>/<service>_runs.json` keeps the ids of the runs and the last step they hold: a
  resumed run reopens the same runs and does not send again the steps it redoes (the same
  numbers, as a resume is bit for bit).
  """

  service: str

  def __init__(self, workdir: str, config):
    self.workdir = os.path.abspath(workdir)
    self.group = os.path.basename(self.workdir)
    self.config = json.loads(config.to_json_best_effort())
    self.state_path = os.path.join(workdir, f'{self.service}_runs.json')
    saved = {}
    if os.path.exists(self.state_path):
      with open(self.state_path) as f:
        saved = json.load(f)
    self.run_ids = {int(replica): run_id for replica, run_id in saved.get('run_ids', {}).items()}
    self.logged_through = saved.get('logged_through', -1)
    self.runs: dict[int, Any] = {}  # replica → the run this process opened

  @abc.abstractmethod
  def _start(self, replica: int, run_id: str | None, run_config: dict):
    """Opens the replica's run, a new one when `run_id` is None; returns (run, its id)."""

  @abc.abstractmethod
  def _log(self, run, step: int, metrics: dict[str, float]) -> None:
    """Logs `metrics` at `step` in `run`."""

  @abc.abstractmethod
  def _finish(self, run) -> None:
    """Closes `run`, every metric sent."""

  def write(self, step: int, records: list[dict]) -> None:
    if step <= self.logged_through:  # redone after a resume: the runs hold it already
      return
    for record in records:
      replica = record['replica']
      if replica not in self.runs:
        self.runs[replica], self.run_ids[replica] = self._start(
            replica, self.run_ids.get(replica), self._run_config(record))
      self._log(self.runs[replica], step, _measured(record))
    # Recorded after the runs have the step: a run killed in between sends it again rather
    # than never.
    self.logged_through = step
    temporary = f'{self.state_path}.tmp'
    with open(temporary, 'w') as f:
      json.dump({'run_ids': self.run_ids, 'logged_through': step}, f)
    os.replace(temporary, self.state_path)

  def _run_config(self, record: dict) -> dict:
    """The config, with the replica's seed and hyper-parameters in place of the config's."""
    return {**self.config, 'workdir': self.workdir,
            **{key: record[key] for key in _REPLICA_KEYS},
            **{key.removeprefix(_HPARAMS): value for key, value in record.items()
               if key.startswith(_HPARAMS)}}

  def close(self) -> None:
    for run in self.runs.values():
      self._finish(run)


class WandbTracker(_RunPerReplica):
  """Weights & Biases: one run per replica, grouped by the workdir's name, in the project
  `$WANDB_PROJECT` (default 'fajax'); W&B's own settings choose the entity and mode."""

  service = 'wandb'

  def __init__(self, workdir: str, config):
    import wandb  # pylint: disable=g-import-not-at-top

    super().__init__(workdir, config)
    self.wandb = wandb

  def _start(self, replica, run_id, run_config):
    run = self.wandb.init(
        project=os.environ.get('WANDB_PROJECT', 'fajax'), group=self.group,
        name=f'{self.group}/replica_{replica}', id=run_id, resume='allow', config=run_config,
        reinit='create_new')  # a run per replica, open side by side
    return run, run.id

  def _log(self, run, step, metrics):
    run.log(metrics, step=step)

  def _finish(self, run):
    run.finish()


class MlflowTracker(_RunPerReplica):
  """MLflow: one run per replica, in the experiment named after the workdir, at the tracking
  store `$MLFLOW_TRACKING_URI`; the run's params are its config."""

  service = 'mlflow'

  def __init__(self, workdir: str, config):
    import mlflow  # pylint: disable=g-import-not-at-top
    from mlflow import entities  # pylint: disable=g-import-not-at-top
    from mlflow import tracking  # pylint: disable=g-import-not-at-top

    super().__init__(workdir, config)
    self.entities = entities
    try:
      self.client = tracking.MlflowClient()
    except mlflow.exceptions.MlflowException as e:
      raise ConfigError(
          f"MLflow cannot use the tracking store '{mlflow.get_tracking_uri()}' "
          f"({' '.join(str(e).split())}); set MLFLOW_TRACKING_URI to your MLflow server, "
          'e.g. http://localhost:5000') from e

  def _start(self, replica, run_id, run_config):
    if run_id:
      self.client.update_run(run_id, status='RUNNING')
      return run_id, run_id
    experiment = self.client.get_experiment_by_name(self.group)
    experiment_id = (experiment.experiment_id if experiment
                     else self.client.create_experiment(self.group))
    run_id = self.client.create_run(experiment_id, run_name=f'replica_{replica}',
                                    tags={'fajax.workdir': self.workdir}).info.run_id
    params = [self.entities.Param(key, str(value))
              for key, value in _flattened(run_config).items()]
    # MLflow takes at most 100 params a call.
    for start in range(0, len(params), 100):
      self.client.log_batch(run_id, params=params[start:start + 100])
    return run_id, run_id

  def _log(self, run, step, metrics):
    now = int(time.time() * 1000)
    self.client.log_batch(run, metrics=[self.entities.Metric(key, value, now, step)
                                        for key, value in metrics.items()])

  def _finish(self, run):
    self.client.set_terminated(run)


def _flattened(tree: dict, prefix: str = '') -> dict:
  """{'mirror': {'decay': 1.0}} → {'mirror.decay': 1.0}: MLflow's params are flat."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flattened(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


TRACKERS = {
    'jsonl': lambda workdir, config: JsonlTracker(workdir),
    'tensorboard': lambda workdir, config: TensorBoardTracker(workdir),
    'wandb': WandbTracker,
    'mlflow': MlflowTracker,
}


def check(names) -> None:
  """Raises ConfigError for a name that is no tracker, named twice, or whose package is not
  installed; imports nothing."""
  for name in names:
    if name not in TRACKERS:
      raise ConfigError(
          f"unknown tracker '{name}' in config.trackers; choose from: {', '.join(TRACKERS)}")
    if list(names).count(name) > 1:
      raise ConfigError(f"config.trackers names '{name}' twice; name each tracker once")
    package = _PACKAGES.get(name)
    if package and importlib.util.find_spec(package) is None:
      raise ConfigError(f"config.trackers has '{name}', but {package} is not installed: "
                        f"pip install 'fajax[{name}]'")


def create(config, workdir: str) -> list[Tracker]:
  """The trackers that `config.trackers` names (see `check`), writing the run in `workdir`."""
  return [TRACKERS[name](workdir, config) for name in config.trackers]
