"""The one-epoch FA training commands of fajax and of the PyTorch reference, as a user runs
them, each in its own process: wall time, peak RSS and test error (benchmarks/versus_pytorch.py).
"""

import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent


# Runs a command (argv[2:]) and writes its peak RSS in KiB to argv[1]. Linux carries the peak RSS
# of a process's image before exec over into the program it execs, so a command started straight
# from versus_pytorch.py's process (≈ 1.4 GB by then) would report at least that; started from
# this small one, ≈ 10 MB.
PEAK_RSS_WRAPPER = """
import resource, subprocess, sys
status = subprocess.call(sys.argv[2:])
with open(sys.argv[1], 'w') as f:
  f.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(status)
"""


def run_command(argv: list[str], env: dict, log_path: str) -> dict:
  """Runs a command to its end: its wall time and peak RSS; raises if it fails."""
  with open(log_path, 'w') as log:
    start = time.perf_counter()
    status = subprocess.call([sys.executable, '-c', PEAK_RSS_WRAPPER, log_path + '.rss', *argv],
                             stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    wall_s = time.perf_counter() - start
  if status:
    with open(log_path) as log:
      raise RuntimeError(f'{" ".join(argv)} exited with status {status}:\n{log.read()[-3000:]}')
  with open(log_path + '.rss') as f:
    return {'wall_s': wall_s, 'peak_rss_mb': int(f.read()) / 1024}


def measure(data_dir: str, rounds: int, torch_threads: int) -> list[dict]:
  """Both one-epoch FA commands on real MNIST, alternated `rounds` times; medians."""
  env = {**os.environ, 'FAJAX_DATA_DIR': data_dir, 'PYTHONPATH': os.pathsep.join(
      filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}
  results = {'fajax': [], 'torch': []}
  errors = {}
  with tempfile.TemporaryDirectory() as scratch:  # workdirs, logs and results
    for k in range(rounds):
      workdir = os.path.join(scratch, f'fajax_{k}')
      print(f'whole command, round {k + 1}/{rounds}: fajax', flush=True)
      results['fajax'].append(run_command(
          [sys.executable, '-m', 'fajax.main', '--config=mnist_fa',
           f'--workdir={workdir}', '--config.num_epochs=1'], env, workdir + '.log'))
      with open(os.path.join(workdir, 'metrics.jsonl')) as f:
        evaluations = [r for r in map(json.loads, f) if 'eval/top1_error' in r]
      errors['fajax'] = evaluations[-1]['eval/top1_error']
      print(f'whole command, round {k + 1}/{rounds}: PyTorch', flush=True)
      result_path = os.path.join(scratch, f'torch_{k}.json')
      results['torch'].append(run_command(
          [sys.executable, 'benchmarks/pytorch_reference.py', '--method=fa', '--epochs=1',
           f'--data_dir={data_dir}', f'--threads={torch_threads}',
           f'--result_json={result_path}'], env, result_path + '.log'))
      with open(result_path) as f:
        errors['torch'] = json.load(f)['test_top1_error']
  commands = {
      'fajax': 'python -m fajax.main --config=mnist_fa --config.num_epochs=1',
      'torch': 'python benchmarks/pytorch_reference.py --method=fa --epochs=1'}
  return [{'framework': framework, 'command': commands[framework],
           'wall_s': statistics.median(r['wall_s'] for r in runs),
           'peak_rss_mb': statistics.median(r['peak_rss_mb'] for r in runs),
           'last_test_top1_error': errors[framework], 'rounds': len(runs)}
          for framework, runs in results.items()]
