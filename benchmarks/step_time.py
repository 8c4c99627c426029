"""Training-step time of every method on LeNet-5 (MNIST shapes), relative to BP.

    python benchmarks/step_time.py [--batch_size=128] [--steps=200] [--out=DIR]

Each method's step (forward, backward, optimizer update and feedback-rule update) is jitted,
warmed up, then timed one step at a time; the median is reported, with compile time apart.
Methods are timed in interleaved rounds so that drift in the machine's speed is shared.
"""

import functools
import json
import os
import platform
import statistics
import sys
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging

from fajax import methods
from fajax import training
from fajax.configs import mnist
from fajax.datasets import mnist as mnist_data

_BATCH_SIZE = flags.DEFINE_integer('batch_size', 128, 'Examples per step.')
_STEPS = flags.DEFINE_integer('steps', 200, 'Timed steps per method (over all rounds).')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_OUT = flags.DEFINE_string('out', '', 'Folder for step_time.json and step_time.md.')


def _compiled_step(method, batch):
  config = mnist.get_config(method)
  optimizer, _ = training.create_optimizer(config, total_steps=10_000)
  method = methods.build(config, optimizer)
  model, state = training.create_train_state(config, mnist_data.SPEC, optimizer, method)
  step = jax.jit(
      functools.partial(training.train_step, model=model, optimizer=optimizer, method=method),
      donate_argnums=0,
  )
  start = time.perf_counter()
  compiled = step.lower(state, *batch).compile()
  compile_s = time.perf_counter() - start
  return compiled, state, compile_s


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rng = np.random.default_rng(0)
  batch = (
      jax.device_put(rng.integers(0, 256, (_BATCH_SIZE.value, 28, 28, 1), dtype=np.uint8)),
      jax.device_put(rng.integers(0, 10, _BATCH_SIZE.value).astype(np.int32)),
  )
  steps, states, compile_s, times = {}, {}, {}, {}
  for method in methods.METHODS:
    steps[method], states[method], compile_s[method] = _compiled_step(method, batch)
    for _ in range(10):  # warm-up
      states[method], metrics = steps[method](states[method], *batch)
    jax.block_until_ready(metrics)
    times[method] = []
  per_round = max(_STEPS.value // _ROUNDS.value, 1)
  for _ in range(_ROUNDS.value):
    for method in methods.METHODS:
      for _ in range(per_round):
        start = time.perf_counter()
        states[method], metrics = steps[method](states[method], *batch)
        jax.block_until_ready(metrics)
        times[method].append(time.perf_counter() - start)

  bp_ms = 1e3 * statistics.median(times['bp'])
  rows = []
  for method in methods.METHODS:
    ms = 1e3 * statistics.median(times[method])
    rows.append({
        'method': method,
        'step_ms': round(ms, 3),
        'ratio_to_bp': round(ms / bp_ms, 3),
        'images_per_s': round(_BATCH_SIZE.value / ms * 1e3, 1),
        'compile_s': round(compile_s[method], 2),
    })
  result = {
      'model': 'lenet5',
      'batch_size': _BATCH_SIZE.value,
      'timed_steps': per_round * _ROUNDS.value,
      'device': str(jax.devices()[0]),
      'cpu_count': os.cpu_count(),
      'machine': platform.processor() or platform.machine(),
      'jax': jax.__version__,
      'date': time.strftime('%Y-%m-%d'),
      'rows': rows,
  }
  table = ['| method | step (ms) | × BP | images/s | compile (s) |', '|---|---|---|---|---|']
  table += [
      f"| {r['method']} | {r['step_ms']:.2f} | {r['ratio_to_bp']:.3f} | {r['images_per_s']:.0f} "
      f"| {r['compile_s']:.2f} |" for r in rows
  ]
  print('\n'.join(table))
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, 'step_time.json'), 'w') as f:
      json.dump(result, f, indent=2)
    with open(os.path.join(_OUT.value, 'step_time.md'), 'w') as f:
      f.write('\n'.join(table) + '\n')


if __name__ == '__main__':
  sys.exit(app.run(main))
