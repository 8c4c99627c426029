"""Pictures of runs: learning curves side by side, and per-layer alignment over training.

    fajax plot WORKDIR [WORKDIR ...] --out DIR

writes DIR/learning_curves.png (training loss and test error of every run; for a run of several
replicas their mean with a ±1 std band) and DIR/alignment.png (one row per run: the W–B angle,
the backward-signal angle and the update angle to exact BP, one line per layer, of replica 0).
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position

from fajax import cli  # pylint: disable=wrong-import-position
from fajax import runs  # pylint: disable=wrong-import-position

ALIGNMENT_PANELS = (
    ('angle_wb_deg', 'angle between W and B (°)'),
    ('angle_delta_deg', 'backward signal vs exact BP (°)'),
    ('angle_update_deg', 'weight update vs exact BP (°)'),
)


def _label(run):
  return f"{run['name']} ({run['config'].get('method', '?')})"


def _mean_and_band(ax, run, key, **style):
  """The mean over the run's replicas, with a ±1 std band where it has several."""
  steps, mean, std = runs.band(run['metrics'], key)
  count = len(runs.replicas(run['metrics']))
  [line] = ax.plot(steps, mean, label=_label(run) + (f', mean ± std of {count}' if count > 1
                                                     else ''), **style)
  if count > 1:
    ax.fill_between(steps, np.subtract(mean, std), np.add(mean, std), color=line.get_color(),
                    alpha=0.2)


def learning_curves(all_runs, path):
  fig, (loss_ax, error_ax) = plt.subplots(1, 2, figsize=(12, 4.5))
  for run in all_runs:
    _mean_and_band(loss_ax, run, 'train/loss')
    _mean_and_band(error_ax, run, 'eval/top1_error', marker='o', markersize=3)
  loss_ax.set(xlabel='training step', ylabel='training loss (cross-entropy)', yscale='log',
              title='Training loss')
  error_ax.set(xlabel='training step', ylabel='test top-1 error (%)', yscale='log',
               title='Test error')
  for ax in (loss_ax, error_ax):
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def aligned_layers(metrics: list[dict]) -> list[str]:
  """The layers of the 'align/<layer>/<measure>' keys; a layer name may hold '/' itself
  ('conv1/conv', 'blocks/0/query')."""
  return sorted({key[len('align/'):].rsplit('/', 1)[0]
                 for record in metrics for key in record if key.startswith('align/')})


def alignment(all_runs, path):
  fig, axes = plt.subplots(len(all_runs), len(ALIGNMENT_PANELS),
                           figsize=(15, 3.6 * len(all_runs)), squeeze=False)
  for row, run in zip(axes, all_runs):
    layers = aligned_layers(run['metrics'])
    for ax, (key, ylabel) in zip(row, ALIGNMENT_PANELS):
      for layer in layers:  # replica 0's: the alignment of one model
        steps, values = runs.series(run['metrics'], f'align/{layer}/{key}')
        if steps:
          ax.plot(steps, values, label=layer)
      ax.set(xlabel='training step', ylabel=ylabel, ylim=(0, 180), yticks=range(0, 181, 30),
             title=_label(run))
      ax.axhline(90, color='gray', lw=0.5, ls='--')
      ax.grid(alpha=0.3)
      ax.legend(fontsize=7, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot(workdirs, out) -> list[str]:
  all_runs = [runs.read(w) for w in workdirs]
  os.makedirs(out, exist_ok=True)
  paths = [os.path.join(out, 'learning_curves.png'), os.path.join(out, 'alignment.png')]
  learning_curves(all_runs, paths[0])
  alignment(all_runs, paths[1])
  return paths


def main_from_flags(argv):
  for path in plot(argv[1:], flags.FLAGS.out):
    print(path)


def main():
  # Defined here, not on import: fajax.report, imported beside this module, has its own --out.
  flags.DEFINE_string('out', 'plots', 'Folder for the PNG files.')
  cli.run(main_from_flags, positional=True)


if __name__ == '__main__':
  main()
