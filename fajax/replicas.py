"""Replicas: independent models of one config, trained together as one program.

`config.replicas = R` trains R models per setting; replica r of a setting uses seed
`config.seed + r` for W, B, the rule's randomness and the batch order, so it is the run that
`config.seed = config.seed + r` alone would give (to float tolerance). `config.sweep` lists
values of hyper-parameters (`optimizers.HYPERPARAMS`), crossed with the seeds: the settings
are the product of the swept values, in the order the sweep names them, and the seeds vary
fastest. Every replica is a slice of the train state's leading axis, and its hyper-parameters
are values in its optimizer state, so all share one compiled step (PureJaxRL-style).
"""

import dataclasses
import itertools

import numpy as np

from fajax.optimizers import HYPERPARAMS


@dataclasses.dataclass(frozen=True)
class Replica:
  index: int
  seed: int
  hyperparams: dict  # every name of HYPERPARAMS → this replica's value

  def describe(self) -> str:
    values = ', '.join(f'{k} {v:g}' for k, v in self.hyperparams.items())
    return f'replica {self.index} (seed {self.seed}, {values})'


def swept(config) -> dict[str, tuple]:
  """The swept hyper-parameters and their values (`fajax.experiment.validate_config` checks
  them)."""
  return {name: tuple(v) for name, v in config.sweep.items() if len(v)}


def mean_and_std(values) -> tuple[float, float]:
  """Mean and standard deviation of a metric over replicas. The std is the sample one (ddof 1),
  which papers report over seeds; a single value's is 0."""
  values = np.asarray(values, dtype=float)
  std = float(values.std(ddof=1)) if values.size > 1 else 0.0
  return float(values.mean()), std


def plan(config) -> list[Replica]:
  """Every replica of the run, in the order of the train state's leading axis."""
  sweep = swept(config)
  # Read once: a ConfigDict read costs microseconds, and a run may have many replicas.
  seed, count = config.seed, config.replicas
  unswept = {name: float(config[name]) for name in HYPERPARAMS}
  replicas: list[Replica] = []
  for setting in itertools.product(*sweep.values()):
    hyperparams = {**unswept, **{name: float(v) for name, v in zip(sweep, setting)}}
    for r in range(count):
      replicas.append(Replica(len(replicas), seed + r, hyperparams))
  return replicas


def stacked(replicas: list[Replica]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """The seeds (int32) and hyper-parameters (float32) of the replicas, one entry each."""
  seeds = np.array([r.seed for r in replicas], np.int32)
  hyperparams = {name: np.array([r.hyperparams[name] for r in replicas], np.float32)
                 for name in HYPERPARAMS}
  return seeds, hyperparams
