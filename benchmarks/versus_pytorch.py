"""fajax against the PyTorch reference (benchmarks/pytorch_reference.py): LeNet-5 on MNIST.

    python benchmarks/versus_pytorch.py [--methods=bp,fa,fa_usf_sn,dfa] [--batch_sizes=32,128]
        [--steps=50] [--rounds=5] [--warmup=5] [--eval_examples=10000] [--torch_threads=2]
        [--whole_command] [--data_dir=DIR] [--out=DIR]

Both frameworks run in this process, on random uint8 batches of MNIST's shape, timed in
interleaved rounds (fajax's steps, then PyTorch's, round after round) so that drift in the
machine's speed is shared; each figure is the median over rounds of that round's median.
PyTorch runs --torch_threads threads (2), JAX's CPU client one per core. fajax's bp is compared
with PyTorch's BP, every other method with PyTorch's FA (PyTorch has no uSF or DFA here). Ratios
are fajax / PyTorch.

- per step: forward, backward and the AdamW update, from the uint8 batch (fajax's jitted
  `train_step` up to `jax.block_until_ready`; PyTorch's eager step);
- per epoch, evaluation included, estimated: steps per epoch × the step time + one measured
  evaluation of 10,000 test images in batches of 1000;
- with --whole_command, the commands as a user runs them, each in its own process, on real
  MNIST for one epoch: wall time (imports, data loading, compilation, training, evaluation,
  fajax's checkpoints and logging) and peak RSS.

Prints the tables (markdown); with --out, writes versus_pytorch.md and versus_pytorch.json there.
Without PyTorch it prints one line saying so and exits with status 0.
"""

import sys

try:
  import torch
except ImportError:  # an optional peer: nothing to compare against, which is no failure
  print("PyTorch not installed: pip install -e '.[peer]' to compare against it; skipped")
  sys.exit(0)

import os
import platform
import statistics
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging

import fajax
import pytorch_reference
import timing
import whole_command
from fajax import datasets
from fajax import host_memory
from fajax import methods
from fajax.configs import mnist
from fajax.datasets import mnist as mnist_data

NUM_TRAIN, NUM_TEST = 60_000, 10_000
TORCH_METHOD = {'bp': 'bp'}  # and 'fa' for every other fajax method
TRAINING_STEPS = 10_000  # the schedule's length: any run longer than the timing does

_METHODS = flags.DEFINE_list('methods', 'bp,fa,fa_usf_sn,dfa', 'fajax methods to time.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', '32,128', 'Batch sizes of the step timing.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps per method and batch, over all rounds.')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps per method before the rounds.')
_EVAL_EXAMPLES = flags.DEFINE_integer('eval_examples', NUM_TEST,
                                      'Test images of the timed evaluation (MNIST has 10,000).')
_WHOLE_COMMAND = flags.DEFINE_bool('whole_command', False,
                                   'Also time both one-epoch training commands (minutes).')
_DATA_DIR = flags.DEFINE_string('data_dir', os.environ.get('FAJAX_DATA_DIR', ''),
                                'Folder holding mnist/, for --whole_command.')
_TORCH_THREADS = flags.DEFINE_integer('torch_threads', pytorch_reference.THREADS,
                                      "PyTorch's threads, here and in its whole command.")
_OUT = flags.DEFINE_string('out', '', 'Folder for versus_pytorch.json and versus_pytorch.md.')


def say(line: str) -> None:
  print(line, flush=True)


class FajaxRunner:
  """One fajax method at one batch size: its built experiment, state and batch."""

  def __init__(self, method: str, data: datasets.InMemoryDataset, batch_size: int):
    config = mnist.get_config(method)
    config.update(batch_size=batch_size, num_train_steps=TRAINING_STEPS)
    self.experiment = fajax.build(config, data=data)
    self.state = self.experiment.state
    # A leading replica axis of 1, as the trainer's batches have.
    self.batch = self.experiment.put_batch(data.train_images[None], data.train_labels[None])

  def step(self):
    self.state, metrics = self.experiment.train_step(self.state, *self.batch)
    jax.block_until_ready((self.state, metrics))

  def evaluate(self):
    self.experiment.evaluate(self.state)


class TorchRunner:
  """The PyTorch reference of one method at one batch size, on random uint8 data."""

  def __init__(self, method: str, batch_size: int, num_test: int):
    self.trainer = pytorch_reference.Trainer(method, TRAINING_STEPS)
    split = lambda n: (torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8),
                       torch.randint(0, 10, (n,)))
    self.batch, self.test = split(batch_size), split(num_test)

  def step(self):
    self.trainer.step(*self.batch)

  def evaluate(self):
    self.trainer.evaluate(*self.test)


def seconds_of(call, times: int = 1) -> list[float]:
  durations = []
  for _ in range(times):
    start = time.perf_counter()
    call()
    durations.append(time.perf_counter() - start)
  return durations


def time_rounds(runners: dict, evaluators: dict, *, steps, rounds, warmup) -> tuple[dict, dict]:
  """Median over rounds of each runner's median step, and of each framework's evaluation.

  `runners` maps (framework, method, batch) to a runner, `evaluators` framework to the runner
  whose evaluation is timed: the same forward pass for every method.
  """
  for runner in runners.values():
    seconds_of(runner.step, max(warmup, 1))  # at least one: fajax compiles on its first call
  for evaluator in evaluators.values():
    evaluator.evaluate()
  step_rounds = {key: [] for key in runners}
  eval_rounds = {framework: [] for framework in evaluators}
  per_round = max(steps // rounds, 1)
  for k in range(rounds):
    say(f'timing round {k + 1}/{rounds}')
    for framework in ('fajax', 'torch'):
      for key, runner in runners.items():
        if key[0] == framework:
          step_rounds[key].append(statistics.median(seconds_of(runner.step, per_round)))
      eval_rounds[framework] += seconds_of(evaluators[framework].evaluate)
  median = lambda d: {key: statistics.median(values) for key, values in d.items()}
  return median(step_rounds), median(eval_rounds)


def measure_steps(method_names, batch_sizes, eval_examples, settings) -> dict:
  """The per-step and per-epoch rows of every fajax method against its PyTorch reference."""
  torch_methods = sorted({TORCH_METHOD.get(m, 'fa') for m in method_names})
  runners = {}
  for batch in batch_sizes:
    data = datasets.InMemoryDataset.random(
        mnist_data.SPEC, (mnist_data.IMAGE_SIDE, mnist_data.IMAGE_SIDE, 1), batch,
        eval_examples)
    for method in method_names:
      say(f'fajax {method}, batch {batch}: building')
      runners['fajax', method, batch] = FajaxRunner(method, data, batch)
    for method in torch_methods:
      runners['torch', method, batch] = TorchRunner(method, batch, eval_examples)
  first = batch_sizes[0]
  evaluators = {'fajax': runners['fajax', method_names[0], first],
                'torch': runners['torch', torch_methods[0], first]}
  step_s, eval_s = time_rounds(runners, evaluators, **settings)
  # Scaled to the whole test set: its batches of 1000 all cost the same.
  eval_s = {framework: t * NUM_TEST / eval_examples for framework, t in eval_s.items()}
  steps, epochs = [], []
  for method in method_names:
    torch_method = TORCH_METHOD.get(method, 'fa')
    for batch in batch_sizes:
      fajax_t, torch_t = step_s['fajax', method, batch], step_s['torch', torch_method, batch]
      common = {'method': method, 'torch_method': torch_method, 'batch': batch}
      steps.append({**common, 'fajax_ms': 1e3 * fajax_t, 'torch_ms': 1e3 * torch_t,
                    'ratio': fajax_t / torch_t})
      steps_per_epoch = NUM_TRAIN // batch
      fajax_epoch = steps_per_epoch * fajax_t + eval_s['fajax']
      torch_epoch = steps_per_epoch * torch_t + eval_s['torch']
      epochs.append({**common, 'steps_per_epoch': steps_per_epoch, 'fajax_s': fajax_epoch,
                     'torch_s': torch_epoch, 'ratio': fajax_epoch / torch_epoch})
  return {'steps': steps, 'epochs': epochs, 'evaluation_s': eval_s}


def machine() -> dict:
  with open('/proc/cpuinfo') as f:
    cpu = next((l.split(':', 1)[1].strip() for l in f if l.startswith('model name')), '')
  return {'platform': platform.platform(), 'cpu': cpu, 'cpu_count': os.cpu_count(),
          'jax': jax.__version__, 'torch': torch.__version__,
          'torch_threads': torch.get_num_threads(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''), 'date': time.strftime('%Y-%m-%d %H:%M')}


def to_markdown(result: dict) -> str:
  m, s = result['machine'], result['settings']
  evaluation = result['evaluation_s']
  measured_on = ('' if s['eval_examples'] == NUM_TEST else
                 f" on {s['eval_examples']:,} and scaled")
  lines = [
      '# fajax versus PyTorch: LeNet-5 on MNIST', '',
      f"{m['cpu']} ({m['cpu_count']} cores), {m['date']}; jax {m['jax']} (one thread per "
      f"core), torch {m['torch']} ({m['torch_threads']} threads); "
      f"XLA_FLAGS={m['xla_flags'] or '(none)'}. Median over {s['rounds']} interleaved rounds "
      f"of each round's median step ({s['steps_per_round']} steps per round, {s['warmup']} "
      'warm-up). fajax bp is compared with PyTorch BP, other methods with PyTorch FA; '
      'ratio = fajax / PyTorch.', '',
      '## Per step (forward, backward, AdamW update)', '',
      '| method | torch method | batch | fajax ms | torch ms | ratio |',
      '|---|---|---|---|---|---|']
  lines += [f"| {r['method']} | {r['torch_method']} | {r['batch']} | {r['fajax_ms']:.2f} | "
            f"{r['torch_ms']:.2f} | {r['ratio']:.3f} |" for r in result['steps']]
  lines += [
      '', '## Per epoch, evaluation included (estimated)', '',
      f"Steps per epoch × the median step + one evaluation of the {NUM_TEST:,} test images "
      f"(batches of 1000), measured{measured_on}: fajax {evaluation['fajax']:.2f} s, PyTorch "
      f"{evaluation['torch']:.2f} s. fajax's trainer runs the MNIST config's steps several per "
      'call, a little faster than the single steps timed here.', '',
      '| method | torch method | batch | steps | fajax s | torch s | ratio |',
      '|---|---|---|---|---|---|---|']
  lines += [f"| {r['method']} | {r['torch_method']} | {r['batch']} | {r['steps_per_epoch']} | "
            f"{r['fajax_s']:.2f} | {r['torch_s']:.2f} | {r['ratio']:.3f} |"
            for r in result['epochs']]
  if 'whole_command' in result:
    rows = {r['framework']: r for r in result['whole_command']}
    lines += [
        '', '## Whole command (FA, one epoch of real MNIST, batch 32)', '',
        'Each in its own process: imports, data loading, compilation (fajax keeps compiled '
        'programs in its persistent XLA cache, so a repeated command skips it), training, '
        'evaluation, and fajax\'s logging, diagnostics and checkpoints.', '',
        '| command | wall s | peak RSS MB | test error % |', '|---|---|---|---|']
    lines += [f"| `{r['command']}` | {r['wall_s']:.1f} | {r['peak_rss_mb']:.0f} | "
              f"{r['last_test_top1_error']:.2f} |" for r in rows.values()]
    lines += ['', f"Ratio fajax / PyTorch: wall time "
              f"{rows['fajax']['wall_s'] / rows['torch']['wall_s']:.2f}, peak RSS "
              f"{rows['fajax']['peak_rss_mb'] / rows['torch']['peak_rss_mb']:.2f}."]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  host_memory.retain_freed_buffers()  # as fajax's trainer does (PyTorch shares the process)
  torch.set_num_threads(_TORCH_THREADS.value)
  method_names = _METHODS.value
  unknown = set(method_names) - set(methods.METHODS)
  if unknown:
    raise app.UsageError(f'unknown methods: {", ".join(sorted(unknown))}')
  if _WHOLE_COMMAND.value and not _DATA_DIR.value:
    raise app.UsageError('--whole_command trains on real MNIST: give --data_dir or set '
                         '$FAJAX_DATA_DIR to the folder that holds mnist/')
  if _EVAL_EXAMPLES.value <= 0 or _EVAL_EXAMPLES.value % 1000:
    raise app.UsageError('--eval_examples must be a positive multiple of 1000, the batch of the '
                         'evaluation')
  batch_sizes = [int(b) for b in _BATCH_SIZES.value]
  settings = {'steps': _STEPS.value, 'rounds': _ROUNDS.value, 'warmup': _WARMUP.value}
  result = {'machine': machine(),
            'settings': {**settings, 'eval_examples': _EVAL_EXAMPLES.value,
                         'steps_per_round': max(_STEPS.value // _ROUNDS.value, 1)},
            **measure_steps(method_names, batch_sizes, _EVAL_EXAMPLES.value, settings)}
  if _WHOLE_COMMAND.value:
    result['whole_command'] = whole_command.measure(_DATA_DIR.value, _ROUNDS.value,
                                                    torch.get_num_threads())
  timing.publish(to_markdown(result), result, _OUT.value, 'versus_pytorch')


if __name__ == '__main__':
  sys.exit(app.run(main))
