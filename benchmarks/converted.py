"""What `fajax.to_feedback` costs: LeNet-5 in plain Flax NNX, converted, against the built-in one.

    python benchmarks/converted.py [--methods=bp,fa,dfa] [--batch_size=32] [--steps=100]
        [--rounds=5] [--warmup=5] [--out=DIR]

Both train with the MNIST column's config on the same random MNIST-shaped batch: the built-in
`lenet5` (hand-placed DFA taps) and `PlainLeNet5`, the same layers in plain nnx, through
`fajax.to_feedback` and `fajax.train`'s `model=` (DFA at its layers' inputs). Each method's two
steps are `fajax.build`'s jitted train step, one step per call, warmed up, then timed in
interleaved rounds so that drift in the machine's speed is shared. Per round, the median step
of each and their ratio converted / built-in; the table gives the median over the rounds and
the rounds' range, which on a shared machine says how far to trust it.
"""

import statistics
import sys
import time

import jax
from absl import app
from absl import flags
from absl import logging
from flax import nnx

import fajax
from fajax import datasets
from fajax import host_memory
from fajax.configs import mnist
from fajax.datasets import mnist as mnist_data
from fajax.layers import default_kernel_init
from fajax.models.common import max_pool

import timing

_METHODS = flags.DEFINE_list('methods', 'bp,fa,dfa', 'Methods to time.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 32, 'Batch size (the MNIST column\'s: 32).')
_STEPS = flags.DEFINE_integer('steps', 100, 'Timed steps per model and method, all rounds.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps per model before the rounds.')
_OUT = flags.DEFINE_string('out', '', 'Folder for converted.json and converted.md.')


class PlainLeNet5(nnx.Module):
  """`fajax.models.lenet.LeNet5`'s layers, shapes and initializer in plain nnx."""

  def __init__(self, rngs: nnx.Rngs):
    layer = dict(kernel_init=default_kernel_init, rngs=rngs)
    self.conv1 = nnx.Conv(1, 6, (5, 5), padding='VALID', **layer)
    self.conv2 = nnx.Conv(6, 16, (5, 5), padding='VALID', **layer)
    self.conv3 = nnx.Conv(16, 120, (5, 5), padding='VALID', **layer)
    self.fc1 = nnx.Linear(120, 84, **layer)
    self.fc2 = nnx.Linear(84, 10, **layer)

  def __call__(self, x):
    # The built-in model's pooling, so that the ratio measures conversion alone.
    x = max_pool(nnx.relu(self.conv1(x)), 2, 2)
    x = max_pool(nnx.relu(self.conv2(x)), 2, 2)
    x = nnx.relu(self.conv3(x))
    return self.fc2(nnx.relu(self.fc1(x.reshape(x.shape[0], -1))))


def build(method: str, batch_size: int) -> tuple[dict, dict]:
  """The calls 'built-in' and 'converted' (their jitted train steps) and their initial states."""
  config = mnist.get_config(method)
  config.update(batch_size=batch_size, eval_batch_size=batch_size, num_train_steps=10_000)
  raw_shape = (mnist_data.IMAGE_SIDE, mnist_data.IMAGE_SIDE, 1)
  data = datasets.InMemoryDataset.random(mnist_data.SPEC, raw_shape, batch_size, batch_size)
  converted = fajax.to_feedback(PlainLeNet5(nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1),
                                kernel_init=default_kernel_init)
  calls, states = {}, {}
  for name, model in (('built-in', None), ('converted', converted)):
    experiment = fajax.build(config, model=model, data=data)
    batch = experiment.put_batch(data.train_images[None], data.train_labels[None])
    calls[name] = timing.Call(experiment.train_step, batch, name)
    states[name] = experiment.state
  return calls, states


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  host_memory.retain_freed_buffers()  # as the trainer does
  rows = []
  for method in _METHODS.value:
    print(f'{method}: compiling and timing', flush=True)
    medians = timing.time_in_rounds(*build(method, _BATCH_SIZE.value), steps=_STEPS.value,
                                    rounds=_ROUNDS.value, warmup=_WARMUP.value)
    ratios = [c / b for c, b in zip(medians['converted'], medians['built-in'])]
    rows.append({'method': method, 'built_in_ms': 1e3 * statistics.median(medians['built-in']),
                 'converted_ms': 1e3 * statistics.median(medians['converted']),
                 'ratio': statistics.median(ratios), 'round_ratios': ratios,
                 'round_ms': {name: [1e3 * t for t in times] for name, times in medians.items()}})
  lines = [f'LeNet-5 per training step, batch {_BATCH_SIZE.value}, {_ROUNDS.value} rounds',
           '', '| method | built-in ms/step | converted ms/step | converted / built-in | '
           'rounds\' range |', '|---|---|---|---|---|']
  for r in rows:
    low, high = min(r['round_ratios']), max(r['round_ratios'])
    lines.append(f"| {r['method']} | {r['built_in_ms']:.2f} | {r['converted_ms']:.2f} | "
                 f"{r['ratio']:.3f} | {low:.3f}–{high:.3f} |")
  result = {'device': str(jax.devices()[0]), 'date': time.strftime('%Y-%m-%d %H:%M'),
            'batch_size': _BATCH_SIZE.value, 'rows': rows}
  timing.publish('\n'.join(lines) + '\n', result, _OUT.value, 'converted')


if __name__ == '__main__':
  sys.exit(app.run(main))
