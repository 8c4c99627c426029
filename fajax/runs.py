"""Reading finished or running workdirs: their config and their metrics.jsonl."""

import json
import os

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


def series(metrics: list[dict], key: str) -> tuple[list[int], list[float]]:
  """Steps and values of one metric, where it was logged."""
  points = [(m['step'], m[key]) for m in metrics if key in m]
  return [s for s, _ in points], [v for _, v in points]


def final(metrics: list[dict], key: str):
  _, values = series(metrics, key)
  return values[-1] if values else None
