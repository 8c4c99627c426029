"""What R replicas in one program cost against R separate runs, per replica.

    python benchmarks/replicas.py [--methods=bp,fa] [--batch_sizes=32,128] [--replicas=4,8]
        [--steps=100] [--rounds=5] [--out=DIR]

LeNet-5 on random MNIST-shaped batches with the MNIST column's config. For each method and
batch size it builds one experiment of a single replica and one of R replicas (`fajax.build`,
`config.replicas`), and times their jitted steps as the trainer calls them: one step per call
and `steps_per_call` (33) steps per call, in interleaved rounds, median per step. The ratio
t(R replicas) / (R · t(1 replica)) is what a replica costs in the program against a run of
its own: ≤ 1.0 means training R seeds together is no slower than R runs one after another.
"""

import statistics
import sys
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging

import fajax
from fajax import datasets
from fajax import host_memory
from fajax.configs import mnist
from fajax.datasets import mnist as mnist_data

import timing

_METHODS = flags.DEFINE_list('methods', 'bp,fa', 'Methods to time.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', '32,128', 'Batch sizes per replica.')
_REPLICAS = flags.DEFINE_list('replicas', '4,8', 'Replica counts R compared with 1.')
_STEPS = flags.DEFINE_integer('steps', 100, 'Timed steps per variant (over all rounds).')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_OUT = flags.DEFINE_string('out', '', 'Folder for replicas.json and replicas.md.')


def build(method: str, batch_size: int, replicas: int):
  """The experiment and a batch per variant: 'single' [R, b] and 'stacked' [33, R, b]."""
  config = mnist.get_config(method)
  config.update(batch_size=batch_size, eval_batch_size=batch_size, num_train_steps=10_000,
                replicas=replicas)
  raw_shape = (mnist_data.IMAGE_SIDE, mnist_data.IMAGE_SIDE, 1)
  data = datasets.InMemoryDataset.random(mnist_data.SPEC, raw_shape, batch_size, batch_size)
  experiment = fajax.build(config, data=data)
  images = np.repeat(data.train_images[None], replicas, axis=0)
  labels = np.repeat(data.train_labels[None], replicas, axis=0)
  stack = lambda x: np.repeat(x[None], config.steps_per_call, axis=0)
  batches = {'single': experiment.put_batch(images, labels),
             'stacked': experiment.put_batch(stack(images), stack(labels), stacked=True)}
  return experiment, batches, config.steps_per_call


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  host_memory.retain_freed_buffers()  # as the trainer does
  rows = []
  for method in _METHODS.value:
    for batch_size in map(int, _BATCH_SIZES.value):
      counts = [1] + [int(r) for r in _REPLICAS.value]
      calls, states = {}, {}
      for count in counts:
        experiment, batches, per_call = build(method, batch_size, count)
        calls[count, 'single'] = timing.Call(experiment.train_step, batches['single'], count)
        calls[count, 'stacked'] = timing.Call(experiment.train_steps, batches['stacked'], count,
                                              per_call)
        states[count] = experiment.state
      print(f'{method}, batch {batch_size}: timing', flush=True)
      rounds = timing.time_in_rounds(calls, states, steps=_STEPS.value, rounds=_ROUNDS.value,
                                     warmup=2 * per_call)  # compiles and warms up
      seconds = {key: statistics.median(medians) for key, medians in rounds.items()}
      for count in counts[1:]:
        for variant in ('single', 'stacked'):
          one, many = seconds[1, variant], seconds[count, variant]
          rows.append({'method': method, 'batch_size': batch_size, 'replicas': count,
                       'variant': variant, 'one_replica_ms': 1e3 * one,
                       'all_replicas_ms': 1e3 * many, 'ratio': many / (count * one)})
  lines = ['| method | batch | R | steps per call | 1 replica ms/step | R replicas ms/step | '
           'ratio t_R / (R·t_1) |', '|---|---|---|---|---|---|---|']
  for r in rows:
    per_call = 1 if r['variant'] == 'single' else mnist.get_config('bp').steps_per_call
    lines.append(f"| {r['method']} | {r['batch_size']} | {r['replicas']} | {per_call} | "
                 f"{r['one_replica_ms']:.2f} | {r['all_replicas_ms']:.2f} | {r['ratio']:.3f} |")
  result = {'device': str(jax.devices()[0]), 'date': time.strftime('%Y-%m-%d %H:%M'),
            'rows': rows}
  timing.publish('\n'.join(lines) + '\n', result, _OUT.value, 'replicas')


if __name__ == '__main__':
  sys.exit(app.run(main))
