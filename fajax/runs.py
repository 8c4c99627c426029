"""Reading finished or running workdirs: their config and their metrics.jsonl."""

import json
import os

from fajax import replicas as replicas_lib
from fajax.errors import FajaxError


def read(workdir: str) -> dict:
  """{'name', 'config', 'metrics'} of a workdir written by fajax.main / fajax.train."""
  paths = [os.path.join(workdir, name) for name in ('config.json', 'metrics.jsonl')]
  missing = [p for p in paths if not os.path.exists(p)]
  if missing:
    raise FajaxError(
        f'{workdir} is not a fajax workdir: {", ".join(missing)} missing; give folders that '
        'python -m fajax.main wrote into'
    )
  with open(paths[0]) as f:
    config = json.load(f)
  with open(paths[1]) as f:
    metrics = [json.loads(line) for line in f if line.strip()]
  name = os.path.basename(os.path.normpath(workdir))
  return {'name': name, 'config': config, 'metrics': metrics}


def series(metrics: list[dict], key: str, replica: int = 0) -> tuple[list[int], list[float]]:
  """Steps and values of one replica's metric, where it was logged."""
  points = [(m['step'], m[key]) for m in metrics if key in m and m.get('replica', 0) == replica]
  return [s for s, _ in points], [v for _, v in points]


def replicas(metrics: list[dict]) -> list[int]:
  """The replicas a run logged (records without a replica index are replica 0)."""
  return sorted({m.get('replica', 0) for m in metrics})


def band(metrics: list[dict], key: str) -> tuple[list[int], list[float], list[float]]:
  """Steps, mean and standard deviation over the replicas that have not diverged there."""
  by_step: dict[int, list[float]] = {}
  for m in metrics:
    if key in m and 'diverged_step' not in m:
      by_step.setdefault(m['step'], []).append(m[key])
  steps = sorted(by_step)
  spreads = [replicas_lib.mean_and_std(by_step[s]) for s in steps]
  return steps, [mean for mean, _ in spreads], [std for _, std in spreads]


def final_per_replica(metrics: list[dict], key: str) -> dict[int, float]:
  """Each replica's last value of `key`, for the replicas that did not diverge."""
  last = {}
  for m in metrics:
    if key in m:
      last[m.get('replica', 0)] = None if 'diverged_step' in m else m[key]
  return {r: v for r, v in last.items() if v is not None}
