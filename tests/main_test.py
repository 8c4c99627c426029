"""End to end: the CLI and `fajax.train` on a slice of the real MNIST."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import fajax
from fajax import column
from fajax import experiments
from fajax import paper
from fajax.configs import mnist
from fajax.errors import ConfigError

REPO = pathlib.Path(__file__).resolve().parent.parent
SMALL_RUN = [
    '--config.train_examples_limit=2048',
    '--config.eval_examples_limit=500',
    '--config.batch_size=64',
    '--config.num_train_steps=20',
    '--config.log_every_steps=5',
    '--config.checkpoint_every_steps=10',
]


def _cli(config, workdir, *overrides, data_dir=None):
  env = dict(os.environ)
  if data_dir:
    env['FAJAX_DATA_DIR'] = data_dir
  return subprocess.run(
      [sys.executable, '-m', 'fajax.main', f'--config={config}',
       f'--workdir={workdir}', *overrides],
      capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
  )


def _metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


def _programs(cache):
  """The cached programs that matter for start-up: the network's draw, init, the steps and
  the evaluation."""
  return sorted(name for name in os.listdir(cache)
                if name.startswith(('jit_draw', 'jit_init', 'jit_train', 'jit_eval')))


def test_cli_trains_writes_outputs_and_resumes_exactly(tmp_path, mnist_data_dir, monkeypatch):
  full, resumed = tmp_path / 'full', tmp_path / 'resumed'
  cache = tmp_path / 'xla'
  # Cache every program, however fast it compiled (the suite's setting too): under the suite's
  # compile flags the evaluation compiles in ≈ 0.2 s, and a threshold near that caches it only
  # sometimes.
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  run = lambda workdir: _cli('mnist_fa_usf_sn', workdir, *SMALL_RUN,
                             f'--compilation_cache_dir={cache}', data_dir=mnist_data_dir)
  first = run(full)
  assert first.returncode == 0, first.stderr
  assert 'steps/s' in first.stdout and 'Done at step 20' in first.stdout
  compiled = _programs(cache)
  assert [name.split('-')[0] for name in compiled].count('jit_eval_replicas') == 1

  config = json.loads((full / 'config.json').read_text())
  assert config['method'] == 'fa_usf_sn' and config['num_train_steps'] == 20
  lines = _metrics(full)
  assert [l['step'] for l in lines] == [5, 10, 15, 20]
  for key in ('train/loss', 'train/top1_error', 'eval/loss', 'eval/top1_error'):
    assert key in lines[-1]
  assert lines[-1]['eval/top1_error'] < 90  # 20 small steps already beat chance
  assert sorted(os.listdir(full / 'checkpoints')) == ['10', '20']

  # Interrupt a copy after step 10: drop its last checkpoint and the log lines after it.
  shutil.copytree(full, resumed)
  shutil.rmtree(resumed / 'checkpoints' / '20')
  with open(resumed / 'metrics.jsonl', 'a') as f:
    f.write(json.dumps({'step': 15, 'train/loss': -1.0}) + '\n')
  again = run(resumed)
  assert again.returncode == 0, again.stderr
  assert 'Resumed from the checkpoint at step 10' in again.stdout
  assert _metrics(resumed) == lines  # the same steps, the same numbers, no duplicates
  # The second run found every program it ran in the compilation cache: it compiled none.
  assert _programs(cache) == compiled

  # The same command once more: nothing left to train, the same result.
  done = run(resumed)
  assert 'Resumed from the checkpoint at step 20' in done.stdout
  assert f"test error {lines[-1]['eval/top1_error']:.2f}%" in done.stdout


def test_train_returns_final_metrics_and_writes_nothing_without_workdir(
    tmp_path, mnist_data_dir, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = mnist.get_config('bp')
  config.update(dict(data_dir=mnist_data_dir, num_train_steps=10, batch_size=32,
                     train_examples_limit=512, eval_examples_limit=300, eval_batch_size=128,
                     diagnostics=False))
  metrics = fajax.train(config)
  assert metrics['step'] == 10
  assert 0 <= metrics['eval/top1_error'] <= 100 and metrics['eval/loss'] > 0
  assert os.listdir(tmp_path) == []


def test_every_cell_of_the_paper_table_has_a_config():
  for column_name in paper.COLUMNS:
    for method in paper.methods_of(column_name):
      assert experiments.path_of(f'{column_name}_{method}') is not None, method
  assert len(paper.methods_of('mnist')) == 9
  # 9 MNIST + 9 CIFAR-10 1 + 7 CIFAR-10 2 + 10 ImageNet 1 + 7 ImageNet 2 cells (issues 3, 4).
  assert sum(len(cells) for cells in paper.TABLE.values()) == 42


def test_column_chooses_on_validation_and_renders_error_bars_next_to_the_paper(
    tmp_path, mnist_data_dir, monkeypatch):
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  cells = column.run_column(
      'mnist', str(tmp_path), seeds=2, sweep={'learning_rate': (1e-3, 1e-6)},
      validation_examples=1000, methods=['bp', 'dfa'],
      overrides=dict(num_train_steps=20, train_examples_limit=3000, eval_examples_limit=1000,
                     diagnostics=False))
  assert set(cells) == {'bp', 'dfa'} and cells['dfa']['step'] == 20
  assert cells['dfa']['command'].endswith(
      '--config.num_train_steps=20 --config.train_examples_limit=3000 '
      '--config.eval_examples_limit=1000 --config.diagnostics=False')
  for cell in cells.values():
    assert len(cell['replicas']) == 4 and cell['n'] == 2
    # 20 steps at 1e-6 learn nothing: validation picks 1e-3.
    assert cell['chosen'] == {'learning_rate': 1e-3, 'weight_decay': 5e-4}
    assert cell['min'] <= cell['mean'] <= cell['max']
  table = (tmp_path / 'results.md').read_text().splitlines()
  assert table[0].startswith('| method | paper (%) | test error (%) mean ± std (n) | min–max')
  rows = {line.split(' | ')[0].lstrip('| '): line for line in table[2:]}
  assert len(rows) == 9
  bp = cells['bp']
  assert f"| 0.8 | {bp['mean']:.2f} ± {bp['std']:.2f} (2) |" in rows['BP']
  assert '| learning_rate 0.001 |' in rows['BP'] and '✗ outside' in rows['BP']
  assert 'not run' in rows['DenseFA'] and 'not run' not in rows['DFA']
  assert (tmp_path / 'results.png').read_bytes().startswith(b'\x89PNG')
  with pytest.raises(ConfigError, match='no such config field: num_epoch$'):
    column.run_column('mnist', str(tmp_path), overrides={'num_epoch': 1}, methods=['bp'])
  with pytest.raises(ConfigError, match='bp_const not in the mnist column'):
    column.run_column('mnist', str(tmp_path), methods=['bp_const'])
  with pytest.raises(ConfigError, match='a sweep chooses on a validation split'):
    column.run_column('mnist', str(tmp_path), sweep={'learning_rate': (1e-3, 1e-2)},
                      validation_examples=0)


def test_column_cells_split_over_array_tasks_collect_into_one_table(tmp_path, mnist_data_dir,
                                                                     monkeypatch):
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  # Task 1 of 8 takes the cells 1 and 9 of the column's nine: BP + Noise alone.
  tiny = dict(num_train_steps=4, eval_examples_limit=500, diagnostics=False)
  cells = column.run_column('mnist', str(tmp_path), overrides=tiny, validation_examples=0,
                            task=1, tasks=8)
  assert list(cells) == ['bp_noise']
  assert (tmp_path / 'bp_noise' / 'cell.json').exists()
  column.run_column('mnist', str(tmp_path), overrides=tiny, validation_examples=0,
                    methods=['bp'])
  assert set(column.collect('mnist', str(tmp_path))) == {'bp', 'bp_noise'}
  rows = (tmp_path / 'results.md').read_text()
  assert '| BP + Noise | 0.8 |' in rows and '| BP | 0.8 |' in rows and 'not run' in rows
  with pytest.raises(ConfigError, match='task 8 is not one of the 8 tasks'):
    column.run_column('mnist', str(tmp_path), task=8, tasks=8)
