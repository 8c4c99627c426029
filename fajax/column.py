"""Runs every cell of one column of the results table and writes it next to the paper's numbers.

    FAJAX_DATA_DIR=../shared/data python -m fajax.column --column=mnist --workdir=runs/mnist

Each cell trains `experiments/<column>_<method>.py` in WORKDIR/<method> (resuming what a previous
call left unfinished; a finished cell is only re-evaluated) and the table goes to
WORKDIR/results.md and WORKDIR/results.json.
"""

import importlib.util
import json
import os
import pathlib
import time

from absl import flags

from fajax import cli
from fajax import loop
from fajax import paper
from fajax.errors import ConfigError

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / 'experiments'

_COLUMN = flags.DEFINE_enum('column', None, paper.COLUMNS, 'Column of the results table.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for every cell\'s run and the table.')
_NUM_EPOCHS = flags.DEFINE_integer('num_epochs', None, 'Overrides every config\'s num_epochs.')
_NUM_TRAIN_STEPS = flags.DEFINE_integer(
    'num_train_steps', None, 'Overrides every config\'s num_train_steps (for quick checks).'
)
_METHODS = flags.DEFINE_list('methods', None, 'Run only these cells (default: the whole column).')
flags.mark_flags_as_required(['column', 'workdir'])


def load_config(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def render(column: str, results: dict) -> str:
  """Markdown table of the measured errors next to the paper's, in the paper's row order."""
  lines = [
      '| method | paper (%) | measured (%) | difference | wall time (s) |',
      '|---|---|---|---|---|',
  ]
  for method in paper.methods_of(column):
    paper_error = paper.TABLE[method][column]
    name = paper.METHOD_NAMES[method]
    if method not in results:
      lines.append(f'| {name} | {paper_error:.1f} | not run | | |')
      continue
    measured = results[method]['eval/top1_error']
    lines.append(
        f'| {name} | {paper_error:.1f} | {measured:.2f} | {measured - paper_error:+.2f} '
        f"| {results[method]['wall_s']:.0f} |"
    )
  return '\n'.join(lines) + '\n'


def run_column(column, workdir, num_epochs=None, num_train_steps=None, methods=None) -> dict:
  """Trains (or resumes) each cell of `column`, or only `methods`; returns all results so far."""
  column_methods = paper.methods_of(column)
  unknown = sorted(set(methods or ()) - set(column_methods))
  if unknown:
    raise ConfigError(
        f"{', '.join(unknown)} not in the {column} column; choose from: {', '.join(column_methods)}"
    )
  os.makedirs(workdir, exist_ok=True)
  results_path = os.path.join(workdir, 'results.json')
  results = {}
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  for method in methods or column_methods:
    config_path = EXPERIMENTS / f'{column}_{method}.py'
    config = load_config(config_path)
    if num_epochs is not None:
      config.num_epochs = num_epochs
    if num_train_steps is not None:
      config.num_train_steps = num_train_steps
    run_dir = os.path.join(workdir, method)
    print(f'=== {column} / {method} ===', flush=True)
    start = time.perf_counter()
    metrics = loop.train(config, run_dir)
    wall_s = time.perf_counter() - start
    if method in results and results[method]['step'] == metrics['step']:
      wall_s = results[method]['wall_s']  # already finished before: keep its training time
    results[method] = {
        **metrics,
        'wall_s': wall_s,
        'command': f'python -m fajax.main --config=experiments/{config_path.name} '
                   f'--workdir={run_dir}',
    }
    with open(results_path, 'w') as f:
      json.dump(results, f, indent=2)
    with open(os.path.join(workdir, 'results.md'), 'w') as f:
      f.write(render(column, results))
  return results


def run_from_flags():
  results = run_column(
      _COLUMN.value, _WORKDIR.value, _NUM_EPOCHS.value, _NUM_TRAIN_STEPS.value, _METHODS.value
  )
  print(render(_COLUMN.value, results))


if __name__ == '__main__':
  cli.run(run_from_flags)
