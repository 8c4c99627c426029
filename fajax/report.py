"""The results table of measured runs next to the paper's.

The paper is Moskovitz, Litwin-Kumar & Abbott 2018 (arXiv 1812.06488); its numbers are in
`fajax/paper.py`.

    fajax report WORKDIR [WORKDIR ...] --out DIR

Each workdir's config says its column and method; its last test error fills that cell (for a
run of several replicas, mean ± std over those that did not diverge). Writes
DIR/results.md and DIR/results.png: rows are the table's methods, columns its five columns,
each cell "measured (paper)", "not run (paper)" where the paper has a number we lack, and
empty where the paper ran nothing.
"""

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=wrong-import-position

from fajax import cli  # pylint: disable=wrong-import-position
from fajax import paper  # pylint: disable=wrong-import-position
from fajax import replicas as replicas_lib  # pylint: disable=wrong-import-position
from fajax import runs  # pylint: disable=wrong-import-position
from fajax.errors import FajaxError  # pylint: disable=wrong-import-position

COLUMN_TITLES = {'mnist': 'MNIST', 'cifar10_1': 'CIFAR-10 1', 'cifar10_2': 'CIFAR-10 2',
                 'imagenet1': 'ImageNet 1', 'imagenet2': 'ImageNet 2'}


def measured_cells(workdirs) -> dict[tuple[str, str], list[float]]:
  """(method, column) → final test error of each replica of the run that measured it (those
  that did not diverge); a later workdir wins a repeated cell."""
  cells = {}
  for workdir in workdirs:
    run = runs.read(workdir)
    config = run['config']
    if config.get('column') not in paper.COLUMNS:
      raise FajaxError(
          f"{workdir}: its config names no column of the table (column={config.get('column')!r});"
          ' report runs of the fajax/experiments/ configs'
      )
    errors = runs.final_per_replica(run['metrics'], 'eval/top1_error')
    if errors:
      cells[(config['method'], config['column'])] = list(errors.values())
  return cells


def cell_text(errors: list[float]) -> str:
  """One value, or mean ± std (n) of several replicas."""
  if len(errors) == 1:
    return f'{errors[0]:.2f}'
  mean, std = replicas_lib.mean_and_std(errors)
  return f'{mean:.2f} ± {std:.2f} (n={len(errors)})'


def table(cells) -> list[list[str]]:
  """Header row, then one row per method of the paper's table."""
  rows = [['method', *(COLUMN_TITLES[c] for c in paper.COLUMNS)]]
  for method, paper_cells in paper.TABLE.items():
    row = [paper.METHOD_NAMES[method]]
    for column in paper.COLUMNS:
      if column not in paper_cells:
        row.append('')
      elif (method, column) in cells:
        row.append(f'{cell_text(cells[(method, column)])} ({paper_cells[column]:.1f})')
      else:
        row.append(f'not run ({paper_cells[column]:.1f})')
    rows.append(row)
  return rows


def markdown(rows) -> str:
  lines = ['| ' + ' | '.join(rows[0]) + ' |', '|' + '---|' * len(rows[0])]
  lines += ['| ' + ' | '.join(row) + ' |' for row in rows[1:]]
  note = 'Top-1 test error, %: measured (paper). Paper: Moskovitz et al., arXiv 1812.06488.'
  return '\n'.join(lines) + '\n\n' + note + '\n'


def picture(rows, path):
  fig, ax = plt.subplots(figsize=(13, 0.42 * len(rows) + 1))
  ax.axis('off')
  shown = ax.table(cellText=rows[1:], colLabels=rows[0], loc='center', cellLoc='center')
  shown.auto_set_font_size(False)
  shown.set_fontsize(9)
  shown.scale(1, 1.4)
  for (r, c), cell in shown.get_celld().items():
    text = cell.get_text().get_text()
    if r == 0 or c == 0:
      cell.set_text_props(weight='bold')
    elif text.startswith('not run'):
      cell.set_text_props(color='gray', style='italic')
    elif text:
      cell.set_facecolor('#e8f4e8')
  ax.set_title('Top-1 test error (%): measured (paper)', fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report(workdirs, out) -> str:
  rows = table(measured_cells(workdirs))
  os.makedirs(out, exist_ok=True)
  text = markdown(rows)
  with open(os.path.join(out, 'results.md'), 'w') as f:
    f.write(text)
  picture(rows, os.path.join(out, 'results.png'))
  return text


def main_from_flags(argv):
  print(report(argv[1:], flags.FLAGS.out))


def main():
  # Defined here, not on import: fajax.plot, imported beside this module, has its own --out.
  flags.DEFINE_string('out', 'report', 'Folder for results.md and results.png.')
  cli.run(main_from_flags, positional=True)


if __name__ == '__main__':
  main()
