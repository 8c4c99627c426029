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
import sys
import time

from absl import app
from absl import flags
from absl import logging

from fajax import paper
from fajax import training
from fajax.errors import FajaxError

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / 'experiments'

_COLUMN = flags.DEFINE_enum('column', None, paper.COLUMNS, 'Column of the results table.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for every cell\'s run and the table.')
_NUM_EPOCHS = flags.DEFINE_integer('num_epochs', None, 'Overrides every config\'s num_epochs.')
_NUM_TRAIN_STEPS = flags.DEFINE_integer(
    'num_train_steps', None, 'Overrides every config\'s num_train_steps (for quick checks).'
)
flags.mark_flags_as_required(['column', 'workdir'])


def load_config(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def render(column: str, results: dict) -> str:
  """Markdown table of the measured errors next to the paper's, in the paper's row order."""
  lines = [
      f'| method | paper (%) | measured (%) | difference | wall time (s) |',
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


def run_column(column, workdir, num_epochs=None, num_train_steps=None) -> dict:
  os.makedirs(workdir, exist_ok=True)
  results_path = os.path.join(workdir, 'results.json')
  results = {}
  if os.path.exists(results_path):
    with open(results_path) as f:
      results = json.load(f)
  for method in paper.methods_of(column):
    config_path = EXPERIMENTS / f'{column}_{method}.py'
    config = load_config(config_path)
    if num_epochs is not None:
      config.num_epochs = num_epochs
    if num_train_steps is not None:
      config.num_train_steps = num_train_steps
    run_dir = os.path.join(workdir, method)
    print(f'=== {column} / {method} ===', flush=True)
    start = time.perf_counter()
    metrics = training.train_and_evaluate(config, run_dir)
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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    results = run_column(_COLUMN.value, _WORKDIR.value, _NUM_EPOCHS.value, _NUM_TRAIN_STEPS.value)
  except FajaxError as e:
    print(f'fajax: error: {e}', file=sys.stderr)
    sys.exit(2)
  print(render(_COLUMN.value, results))


if __name__ == '__main__':
  app.run(main)
