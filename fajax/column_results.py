"""A column's results: each method's hyper-parameters chosen on validation, its test error over
the seeds, and the table and figure next to the paper's numbers (`fajax.column` writes them).

A method's cell is `summarize(replicas, paper_error)` of the replicas its run trained
(`fajax.loop.train`'s records): the replicas are grouped by their swept hyper-parameters; the
setting with the lowest mean validation error wins (one whose replicas diverged ranks after
every setting whose replicas all trained); the test errors of its seeds give mean ± std (n)
and min–max, the std the sample one (ddof 1). The test split never chooses anything.
"""

from typing import Any

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

from fajax import paper  # pylint: disable=wrong-import-position
from fajax import replicas as replicas_lib  # pylint: disable=wrong-import-position

HPARAMS_PREFIX = 'hparams/'


def _setting(replica: dict) -> tuple:
  return tuple(sorted((k[len(HPARAMS_PREFIX):], v) for k, v in replica.items()
                      if k.startswith(HPARAMS_PREFIX)))


def summarize(replicas: list[dict], paper_error: float) -> dict:
  """The cell of one method: its chosen setting and the test errors of that setting's seeds."""
  settings: dict[tuple, list[dict]] = {}
  for replica in replicas:
    settings.setdefault(_setting(replica), []).append(replica)
  by_setting: list[dict[str, Any]] = []
  for setting, members in settings.items():
    healthy = [r for r in members if 'diverged_step' not in r]
    validation = [r['validation/top1_error'] for r in healthy if 'validation/top1_error' in r]
    by_setting.append({
        'hparams': dict(setting), 'diverged': len(members) - len(healthy),
        'validation_mean': float(np.mean(validation)) if validation else None,
        'test_errors': [r['eval/top1_error'] for r in healthy],
    })
  ranked = sorted(by_setting, key=lambda s: (
      s['diverged'] > 0 or not s['test_errors'], s['validation_mean'] or 0.0))
  chosen = ranked[0]
  return {'chosen': chosen['hparams'], 'settings': by_setting,
          'validation_mean': chosen['validation_mean'],
          **statistics(chosen['test_errors'], paper_error)}


def statistics(errors: list[float], paper_error: float) -> dict:
  """A cell's numbers from its seeds' test errors: n, mean ± std (sample), min–max, and whether
  the paper's value lies outside mean ± 2 std (undefined for fewer than 2 seeds).

  `fajax.column` recomputes them from the stored test errors whenever it writes the table, so a
  cell written by an earlier fajax is shown as this one computes it.
  """
  mean, std = replicas_lib.mean_and_std(errors) if errors else (0.0, 0.0)
  return {
      'paper': paper_error, 'test_errors': errors, 'n': len(errors),
      'mean': mean if errors else None, 'std': std if errors else None,
      'min': min(errors, default=None), 'max': max(errors, default=None),
      'paper_outside_2std': (abs(paper_error - mean) > 2 * std) if len(errors) > 1 else None,
  }


def _hparams_text(hparams: dict, swept: set) -> str:
  return ', '.join(f'{k} {v:g}' for k, v in hparams.items() if k in swept) or '(none swept)'


def render(column: str, cells: dict, swept: set) -> str:
  """Markdown table of the measured cells next to the paper's, in the paper's row order."""
  lines = [
      '| method | paper (%) | test error (%) mean ± std (n) | min–max | chosen on validation | '
      'validation error (%) | paper outside mean ± 2 std | wall time (s) |',
      '|---|---|---|---|---|---|---|---|',
  ]
  for method in paper.methods_of(column):
    name, paper_error = paper.METHOD_NAMES[method], paper.TABLE[method][column]
    cell = cells.get(method)
    if cell is None or cell['mean'] is None:
      status = 'not run' if cell is None else 'every replica diverged'
      lines.append(f'| {name} | {paper_error:.1f} | {status} | | | | | |')
      continue
    outside = {None: '—', True: '✗ outside', False: 'inside'}[cell['paper_outside_2std']]
    validation = '' if cell['validation_mean'] is None else f"{cell['validation_mean']:.2f}"
    lines.append(
        f"| {name} | {paper_error:.1f} | {cell['mean']:.2f} ± {cell['std']:.2f} ({cell['n']}) | "
        f"{cell['min']:.2f}–{cell['max']:.2f} | {_hparams_text(cell['chosen'], swept)} | "
        f"{validation} | {outside} | {cell['wall_s']:.0f} |")
  return '\n'.join(lines) + '\n'


def figure(column: str, cells: dict, path: str, image_format: str | None = None) -> None:
  """Per method: each seed's test error as a dot, the paper's value as a line."""
  methods = [m for m in paper.methods_of(column) if m in cells and cells[m]['n']]
  fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(methods) + 2), 4.5))
  for x, method in enumerate(methods):
    errors = cells[method]['test_errors']
    jitter = np.linspace(-0.15, 0.15, len(errors)) if len(errors) > 1 else [0.0]
    ax.plot(x + np.asarray(jitter), errors, 'o', color='tab:blue', alpha=0.7,
            label='fajax, one dot per seed' if x == 0 else None)
    ax.hlines(paper.TABLE[method][column], x - 0.3, x + 0.3, color='tab:red',
              label='paper' if x == 0 else None)
  ax.set_xticks(range(len(methods)), [paper.METHOD_NAMES[m] for m in methods], rotation=30,
                ha='right')
  ax.set(ylabel='top-1 test error (%)', title=f'{column}: test error per seed, chosen setting')
  ax.grid(alpha=0.3, axis='y')
  if methods:
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120, format=image_format)
  plt.close(fig)
