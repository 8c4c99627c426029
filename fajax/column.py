"""Runs every cell of one column of the results table, with error bars, next to the paper's.

    fajax column --column=mnist --workdir=runs/mnist \
        --seeds=5 --sweep=learning_rate=3e-4,1e-3,3e-3

Each cell trains the experiment `<column>_<method>` (`fajax/experiments/`) in WORKDIR/<method>
as one program of replicas: every seed × every swept value (`fajax.replicas`), with the last
`--validation_examples` training examples held out (resuming what a previous call left
unfinished; a finished cell is only re-evaluated), and writes WORKDIR/<method>/cell.json.
Too large for one host, the cells split over a SLURM job array (`launch/slurm_column.sbatch`):
task k of n trains every n-th cell from k, and each task collects the cells finished so far
into the table (`--collect` alone does only that). Each method's setting is chosen by its mean
validation error over the seeds, never on the test split (`fajax.column_results`). Writes
WORKDIR/results.md (paper, test error mean ± std (n), min–max, the chosen values, whether the
paper's value lies outside mean ± 2 std), WORKDIR/results.json and WORKDIR/results.png (per
method, each seed a dot and the paper's value a line).
"""

import importlib.util
import json
import os
import pathlib
import time

from absl import flags

from fajax import cli
from fajax import experiments
from fajax import column_results
from fajax import loop
from fajax import paper
from fajax.errors import ConfigError
from fajax.optimizers import HYPERPARAMS

CELL_FILE = 'cell.json'  # a finished cell's summary, in its run's folder

_COLUMN = flags.DEFINE_enum('column', None, paper.COLUMNS, 'Column of the results table.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Folder for every cell\'s run and the table.')
_SEEDS = flags.DEFINE_integer('seeds', 1, 'Seeds per setting (config.replicas).')
_SWEEP = flags.DEFINE_multi_string(
    'sweep', [], f'NAME=V1,V2,...: values to sweep, NAME of {", ".join(HYPERPARAMS)}; repeat '
    'the flag to cross several.')
_VALIDATION = flags.DEFINE_integer(
    'validation_examples', 10000, 'Training examples held out to choose the setting on.')
_NUM_EPOCHS = flags.DEFINE_integer('num_epochs', None, 'Overrides every config\'s num_epochs.')
_NUM_TRAIN_STEPS = flags.DEFINE_integer(
    'num_train_steps', None, 'Overrides every config\'s num_train_steps (for quick checks).'
)
_METHODS = flags.DEFINE_list('methods', None, 'Run only these cells (default: the whole column).')
_TASK = flags.DEFINE_integer(
    'task', None, 'This task\'s index among --tasks (default: $SLURM_ARRAY_TASK_ID, else 0).')
_TASKS = flags.DEFINE_integer(
    'tasks', None, 'Tasks the cells are split over, task k taking every tasks-th cell from k '
    '(default: $SLURM_ARRAY_TASK_COUNT, else 1).')
_COLLECT = flags.DEFINE_bool('collect', False, 'Only collect the finished cells into the table.')
flags.mark_flags_as_required(['column', 'workdir'])


def load_config(path: pathlib.Path):
  spec = importlib.util.spec_from_file_location(path.stem, path)
  if spec is None or spec.loader is None:
    raise ConfigError(f'{path} is not a Python config file')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def parse_sweep(items: list[str]) -> dict[str, tuple[float, ...]]:
  """{'learning_rate': (3e-4, 1e-3)} from ['learning_rate=3e-4,1e-3']; ConfigError if malformed."""
  sweep = {}
  for item in items:
    name, _, values = item.partition('=')
    try:
      sweep[name] = tuple(float(v) for v in values.split(','))
    except ValueError as e:
      raise ConfigError(f'--sweep={item}: give NAME=V1,V2,... with numbers') from e
  return sweep


def _command(config_path, run_dir, seeds, sweep, validation_examples, overrides) -> str:
  parts = [f'python -m fajax.main --config={config_path.stem}',
           f'--workdir={run_dir}', f'--config.replicas={seeds}',
           f'--config.validation_examples={validation_examples}']
  parts += [f"--config.sweep.{name}='{values}'" for name, values in sweep.items()]
  parts += [f'--config.{name}={value}' for name, value in overrides.items()]
  return ' '.join(parts)


def _write_atomically(path: str, write) -> None:
  """Writes through a temporary file renamed into place: concurrent array tasks never leave a
  half-written table."""
  temporary = f'{path}.{os.getpid()}.tmp'
  write(temporary)
  os.replace(temporary, path)


def collect(column: str, workdir: str) -> dict:
  """The cells finished so far (WORKDIR/<method>/cell.json) as results.json, results.md and
  results.png; returns them."""
  cells = {}
  for method in paper.methods_of(column):
    path = os.path.join(workdir, method, CELL_FILE)
    if os.path.exists(path):
      with open(path) as f:
        cell = json.load(f)
      cells[method] = {**cell, **column_results.statistics(cell['test_errors'],
                                                           paper.TABLE[method][column])}
  swept = {name for cell in cells.values() for name in cell['swept']}

  def write_text(text):
    return lambda path: pathlib.Path(path).write_text(text)

  _write_atomically(os.path.join(workdir, 'results.json'),
                    write_text(json.dumps(cells, indent=2)))
  _write_atomically(os.path.join(workdir, 'results.md'),
                    write_text(column_results.render(column, cells, swept)))
  _write_atomically(os.path.join(workdir, 'results.png'),
                    lambda path: column_results.figure(column, cells, path, image_format='png'))
  return cells


def run_column(column, workdir, *, seeds=1, sweep=None, validation_examples=10000,
               overrides=None, methods=None, task=0, tasks=1) -> dict:
  """Trains (or resumes) each cell of `column` (or of `methods`) that falls to array task
  `task` of `tasks`, then collects every cell finished so far into the table; returns them.

  `overrides`: config fields set in every cell, such as {'num_epochs': 20}; each cell's
  recorded command carries them.
  """
  column_methods = paper.methods_of(column)
  unknown = sorted(set(methods or ()) - set(column_methods))
  if unknown:
    raise ConfigError(
        f"{', '.join(unknown)} not in the {column} column; choose from: {', '.join(column_methods)}"
    )
  if not 0 <= task < tasks:
    raise ConfigError(f'task {task} is not one of the {tasks} tasks (0 to {tasks - 1})')
  sweep, overrides = sweep or {}, overrides or {}
  if any(len(values) > 1 for values in sweep.values()) and not validation_examples:
    raise ConfigError('a sweep chooses on a validation split: set --validation_examples > 0')
  for method in (methods or column_methods)[task::tasks]:
    config_path = experiments.FOLDER / f'{column}_{method}.py'
    config = load_config(config_path)
    config.replicas = seeds
    config.validation_examples = validation_examples
    for name, values in sweep.items():
      if name not in config.sweep:
        raise ConfigError(f"cannot sweep {name}; sweep any of: {', '.join(HYPERPARAMS)}")
      config.sweep[name] = values
    for name, value in overrides.items():
      if name not in config:
        raise ConfigError(f'no such config field: {name}')
      config[name] = value
    run_dir = os.path.join(workdir, method)
    print(f'=== {column} / {method} ===', flush=True)
    cell_path = os.path.join(run_dir, CELL_FILE)
    previous = json.loads(pathlib.Path(cell_path).read_text()) if os.path.exists(
        cell_path) else None
    start = time.perf_counter()
    metrics = loop.train(config, run_dir)
    wall_s = time.perf_counter() - start
    if previous and previous['step'] == metrics['step']:
      wall_s = previous['wall_s']  # already finished before: keep its training time
    cell = {
        **column_results.summarize(metrics['replicas'], paper.TABLE[method][column]),
        'step': metrics['step'], 'wall_s': wall_s, 'swept': sorted(sweep),
        'replicas': metrics['replicas'],
        'command': _command(config_path, run_dir, seeds, sweep, validation_examples, overrides),
    }
    _write_atomically(cell_path, lambda path: pathlib.Path(path).write_text(
        json.dumps(cell, indent=2)))
  return collect(column, workdir)


def run_from_flags():
  if _COLLECT.value:
    cells = collect(_COLUMN.value, _WORKDIR.value)
  else:
    task = _TASK.value if _TASK.value is not None else int(
        os.environ.get('SLURM_ARRAY_TASK_ID', 0))
    tasks = _TASKS.value or int(os.environ.get('SLURM_ARRAY_TASK_COUNT', 1))
    overrides = {name: flag.value for name, flag in (('num_epochs', _NUM_EPOCHS),
                                                     ('num_train_steps', _NUM_TRAIN_STEPS))
                 if flag.value is not None}
    cells = run_column(
        _COLUMN.value, _WORKDIR.value, seeds=_SEEDS.value, sweep=parse_sweep(_SWEEP.value),
        validation_examples=_VALIDATION.value, overrides=overrides, methods=_METHODS.value,
        task=task, tasks=tasks)
  swept = {name for cell in cells.values() for name in cell['swept']}
  print(column_results.render(_COLUMN.value, cells, swept))


def main():
  cli.run(run_from_flags)


if __name__ == '__main__':
  main()
