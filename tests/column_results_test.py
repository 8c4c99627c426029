"""Choosing each method's setting on validation, and the column's table and figure."""

import json

import pytest

from fajax import column
from fajax import column_results


def _replica(lr, seed, validation, test, diverged=False):
  record = {'replica': 0, 'seed': seed, 'hparams/learning_rate': lr,
            'hparams/weight_decay': 0.0, 'validation/top1_error': validation,
            'eval/top1_error': test}
  if diverged:
    record.update(diverged_step=12, diverged_in='the loss')
  return record


def test_the_setting_is_chosen_on_validation_never_on_test():
  replicas = [_replica(1e-3, 0, 1.0, 3.0), _replica(1e-3, 1, 1.2, 3.2),
              _replica(3e-3, 0, 1.5, 0.5), _replica(3e-3, 1, 1.5, 0.7)]
  cell = column_results.summarize(replicas, paper_error=0.8)
  assert cell['chosen'] == {'learning_rate': 1e-3, 'weight_decay': 0.0}
  assert cell['test_errors'] == [3.0, 3.2] and cell['n'] == 2
  assert cell['mean'] == pytest.approx(3.1)
  assert cell['std'] == pytest.approx(0.1 * 2 ** 0.5)  # the sample std, ddof 1
  assert (cell['min'], cell['max']) == (3.0, 3.2)
  assert cell['paper_outside_2std'] is True
  assert cell['validation_mean'] == pytest.approx(1.1)


def test_a_setting_whose_replicas_diverged_ranks_last():
  replicas = [_replica(1e-2, 0, 0.5, 0.5), _replica(1e-2, 1, 0.5, 0.5, diverged=True),
              _replica(1e-3, 0, 2.0, 2.0), _replica(1e-3, 1, 2.2, 2.4)]
  cell = column_results.summarize(replicas, paper_error=2.1)
  assert cell['chosen']['learning_rate'] == 1e-3
  assert cell['paper_outside_2std'] is False  # 2.1 within 2.2 ± 2·0.28
  assert [s['diverged'] for s in cell['settings']] == [1, 0]


def test_table_marks_the_paper_outside_two_std_and_cells_not_run(tmp_path):
  cell = column_results.summarize([_replica(1e-3, 0, 1.0, 1.9), _replica(1e-3, 1, 1.1, 2.1)],
                                  paper_error=1.1)
  text = column_results.render('mnist', {'fa': {**cell, 'wall_s': 12.0}}, {'learning_rate'})
  rows = {line.split(' | ')[0].lstrip('| '): line for line in text.splitlines()[2:]}
  assert rows['FA'] == ('| FA | 1.1 | 2.00 ± 0.14 (2) | 1.90–2.10 | learning_rate 0.001 | '
                        '1.05 | ✗ outside | 12 |')
  assert rows['BP'] == '| BP | 0.8 | not run | | | | | |'
  column_results.figure('mnist', {'fa': cell}, str(tmp_path / 'column.png'))
  assert (tmp_path / 'column.png').read_bytes().startswith(b'\x89PNG')


def test_the_table_recomputes_a_stored_cells_numbers_from_its_test_errors(tmp_path):
  # A cell summarized by an earlier fajax (its std with ddof 0), stored as `fajax.column` does.
  cell = column_results.summarize([_replica(1e-3, 0, 1.0, 1.9), _replica(1e-3, 1, 1.1, 2.1)],
                                  paper_error=1.1)
  stale = {**cell, 'std': 0.1, 'paper_outside_2std': False, 'wall_s': 12.0,
           'swept': ['learning_rate']}
  (tmp_path / 'fa').mkdir()
  (tmp_path / 'fa' / column.CELL_FILE).write_text(json.dumps(stale))
  cells = column.collect('mnist', str(tmp_path))
  assert cells['fa']['std'] == pytest.approx(0.1 * 2 ** 0.5)
  assert cells['fa']['paper_outside_2std'] is True
  assert '| FA | 1.1 | 2.00 ± 0.14 (2) |' in (tmp_path / 'results.md').read_text()
