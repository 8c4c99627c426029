"""The speed benchmark suite end to end, at a tiny size (LeNet-5, two methods, a few steps)."""

import json
import os
import pathlib
import statistics
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_suite_measures_every_requested_method_and_bp(tmp_path):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}
  result = subprocess.run(
      # Batch 32, not LeNet-5's default 128: the same code paths in 60% of the time.
      [sys.executable, 'benchmarks/suite.py', '--models=lenet5', '--methods=dfa',
       '--batch_sizes=lenet5=32', '--diagnose_methods=dfa', '--steps=4', '--rounds=2',
       '--warmup=1', '--matmul_sizes=256,512', '--skip_pipeline', f'--out={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]

  suite = json.loads((tmp_path / 'suite.json').read_text())
  assert suite['matmul_peak']['best_gflops'] > 0
  assert suite['machine']['cpu_count'] > 0
  [model] = suite['models']
  assert model['model'] == 'lenet5' and model['batch_size'] == 32
  rows = {r['method']: r for r in model['rows']}
  assert list(rows) == ['bp', 'dfa']  # BP measured although not requested, and first
  for row in rows.values():
    assert row['ratio_to_bp'] == pytest.approx(row['step_ms'] / rows['bp']['step_ms'])
    # Model FLOPs utilisation counts BP's FLOPs, so a rule doing less work is not flattered.
    assert row['mfu_percent'] == pytest.approx(
        row['percent_of_peak'] * rows['bp']['gflop_per_step'] / row['gflop_per_step'])
    assert row['step_ms'] > 0 and row['gflop_per_step'] > 0 and row['peak_mb'] > 0
    assert row['images_per_s'] == pytest.approx(32e3 / row['step_ms'])
  # DFA sends the error straight from the output: no backward propagation between layers.
  assert rows['dfa']['gflop_per_step'] < rows['bp']['gflop_per_step']
  assert 'diagnostics_overhead_percent' in rows['bp'] and 'diagnose_step_ms' in rows['dfa']
  assert 'pipeline' not in suite
  # The MNIST config runs several steps per call: timed per step too, stacked.
  assert model['steps_per_call'] > 1
  for row in rows.values():
    assert row['stacked_ratio_to_bp'] == pytest.approx(
        row['stacked_step_ms'] / rows['bp']['stacked_step_ms'])

  markdown = (tmp_path / 'suite.md').read_text()
  for method in rows:
    assert f'| {method} |' in markdown
  assert 'Alignment diagnostics every 100 steps: bp' in markdown
  assert f"{model['steps_per_call']} steps per call" in markdown
  assert markdown in result.stdout


def test_replica_benchmark_compares_r_replicas_with_one(tmp_path):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}
  result = subprocess.run(
      [sys.executable, 'benchmarks/replicas.py', '--methods=fa', '--batch_sizes=8',
       '--replicas=2', '--steps=2', '--rounds=1', f'--out={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads((tmp_path / 'replicas.json').read_text())['rows']
  assert [(r['replicas'], r['variant']) for r in rows] == [(2, 'single'), (2, 'stacked')]
  for row in rows:
    assert row['ratio'] == pytest.approx(row['all_replicas_ms'] / (2 * row['one_replica_ms']))
    assert row['one_replica_ms'] > 0
  assert '| fa | 8 | 2 | 33 |' in (tmp_path / 'replicas.md').read_text()


def test_converted_benchmark_compares_a_converted_lenet5_with_the_built_in_one(tmp_path):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
      filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}
  result = subprocess.run(
      [sys.executable, 'benchmarks/converted.py', '--methods=fa,dfa', '--batch_size=8',
       '--steps=2', '--rounds=2', '--warmup=1', f'--out={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads((tmp_path / 'converted.json').read_text())['rows']
  assert [r['method'] for r in rows] == ['fa', 'dfa']
  for row in rows:
    assert len(row['round_ratios']) == 2
    assert row['round_ratios'] == pytest.approx(
        [c / b for c, b in zip(row['round_ms']['converted'], row['round_ms']['built-in'])])
    assert row['ratio'] == pytest.approx(statistics.median(row['round_ratios']))
    assert row['built_in_ms'] > 0 and row['converted_ms'] > 0
  assert '| dfa |' in (tmp_path / 'converted.md').read_text()
