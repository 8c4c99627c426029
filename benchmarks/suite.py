"""The speed benchmark: every method on every model, and the CIFAR-10 input pipeline.

    python benchmarks/suite.py [--models=lenet5,cifar_convnet,resnet20,resnet18]
        [--methods=all|bp,fa,...] [--steps=50] [--rounds=5] [--batch_sizes=lenet5=128,...]
        [--compute_dtype=float32|bfloat16] [--skip_pipeline] [--out=DIR]

Each model runs on random uint8 batches of its dataset's shape, with its column's config
(lenet5: MNIST; vit_tiny: its MNIST config; cifar_convnet: CIFAR-10 1; resnet20: CIFAR-10 2;
alexnet / resnet18: ImageNet 1 / 2, at `--imagenet_size`: 64 on CPU, 224 on an accelerator).
For each method it measures:

- step time: the step the trainer runs (`fajax.build`'s `train_step`: forward, backward,
  optimizer update, constraint and rule update, state donated), warmed up, then timed one step at a time
  up to `jax.block_until_ready` on its outputs; the median. The methods of a model are timed in
  interleaved rounds so that drift in the machine's speed is shared; BP is always among them,
  the reference of "× BP". Images/s is the batch over the step time.
- compile time (lower + compile), apart.
- peak memory of the compiled step (XLA's buffer assignment: arguments, outputs and
  temporaries less the donated buffers); the device's own peak, where it reports one (GPU), is
  given per model (the process's peak up to the end of that model's timing).
- FLOPs per step as XLA counts them, the FLOP/s achieved, and that as a share of this machine's
  matmul peak, measured first (jitted n×n matmuls in the compute dtype, 2n³ FLOPs, best over
  `--matmul_sizes`); MFU (model FLOP utilization): BP's FLOPs per step, the model's training
  work whatever the rule, over this method's step time, as a share of the same peak.
- for BP and `--diagnose_methods`, the step that also measures the alignment diagnostics, and
  their cost at the config's logging frequency: (t_diagnose − t) / (log_every_steps · t).
- where the config runs several steps per call (`steps_per_call`, LeNet-5's MNIST config), the
  time per step of that call too (a `lax.scan` over a stack of batches), as the trainer runs it
  between logging steps.

A method the config refuses (DenseFA's matrices over `direct_feedback_memory_budget_mb`, 2 GB by
default; `--direct_budget_mb` raises it) gets a row saying why. Last, the real CIFAR-10 grain
pipeline (pad-4 crop + flip, batch 128) alone, over the fastest CIFAR-10 training rate measured:
below 3× the input would slow training down. Prints one line per step of progress, then the
tables (markdown); with --out, writes them to suite.md and everything to suite.json there.
"""

import functools
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import app
from absl import flags
from absl import logging

import fajax
from fajax import datasets
from fajax import experiment
from fajax import host_memory
from fajax import methods
from fajax.configs import cifar10_1
from fajax.configs import cifar10_2
from fajax.configs import imagenet as imagenet_configs
from fajax.configs import mnist
from fajax.configs import mnist_vit
from fajax.datasets import cifar10
from fajax.datasets import imagenet
from fajax.datasets import mnist as mnist_data
from fajax.datasets import sources
from fajax.errors import ConfigError

import timing

CONFIGS = {  # model → its column's config, a function of the method
    'lenet5': mnist.get_config,
    'vit_tiny': mnist_vit.get_config,
    'cifar_convnet': cifar10_1.get_config,
    'resnet20': cifar10_2.get_config,
    'alexnet': functools.partial(imagenet_configs.get_config, 'imagenet1'),
    'resnet18': functools.partial(imagenet_configs.get_config, 'imagenet2'),
}
# Batch sizes on CPU (lenet5: 128, the batch of the PyTorch reference figures in BUILD_NOTES.md,
# "Speed"); elsewhere the config's.
CPU_BATCH_SIZES = {'lenet5': 128, 'vit_tiny': 128, 'cifar_convnet': 32, 'resnet20': 32,
                   'alexnet': 16, 'resnet18': 16}
PIPELINE_BATCH = 128

_MODELS = flags.DEFINE_list('models', 'lenet5,cifar_convnet,resnet20,resnet18',
                            f'Models, of: {", ".join(CONFIGS)}.')
_METHODS = flags.DEFINE_list('methods', 'all', '"all" or methods of fajax.methods.METHODS.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Timed steps per method (over all rounds).')
_ROUNDS = flags.DEFINE_integer('rounds', 5, 'Interleaved timing rounds.')
_WARMUP = flags.DEFINE_integer('warmup', 5, 'Untimed steps per method before the rounds.')
_BATCH_SIZES = flags.DEFINE_list('batch_sizes', '', 'Overrides, as model=N,model=N.')
_IMAGENET_SIZE = flags.DEFINE_integer('imagenet_size', 0,
                                      'Image side of ImageNet models; 0: 64 on CPU, else 224.')
_COMPUTE_DTYPE = flags.DEFINE_enum('compute_dtype', None, experiment.COMPUTE_DTYPES,
                                   'config.compute_dtype; default float32 on CPU, else bfloat16.')
_DIAGNOSE_METHODS = flags.DEFINE_list(
    'diagnose_methods', 'fa_usf_sn', 'Methods (of --methods, besides BP) whose diagnostics '
    'step is timed too; "all" for every one.')
_DIRECT_BUDGET_MB = flags.DEFINE_float('direct_budget_mb', None,
                                       'Overrides config.direct_feedback_memory_budget_mb.')
_MATMUL_SIZES = flags.DEFINE_list('matmul_sizes', '',
                                  'Sides of the peak matmuls; default 1024,2048 on CPU, '
                                  'else 2048,4096,8192.')
_SKIP_PIPELINE = flags.DEFINE_bool('skip_pipeline', False, 'Skip the input pipeline.')
_WORKERS = flags.DEFINE_integer('workers', 4, 'Threads of the input pipeline.')
_OUT = flags.DEFINE_string('out', '', 'Folder for suite.json and suite.md.')


def say(line: str) -> None:
  print(line, flush=True)


def machine() -> dict:
  cpu = ''
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      cpu = next((line.split(':', 1)[1].strip() for line in f
                    if line.startswith('model name')), '')
  return {
      'platform': platform.platform(), 'cpu': cpu, 'cpu_count': os.cpu_count(),
      'device': str(jax.devices()[0]), 'device_kind': jax.devices()[0].device_kind,
      'jax': jax.__version__, 'jaxlib': jaxlib.__version__,
      'xla_flags': os.environ.get('XLA_FLAGS', ''), 'date': time.strftime('%Y-%m-%d %H:%M'),
  }


def matmul_peak(sizes, dtype: str, calls: int = 5) -> dict:
  """FLOP/s of a jitted n×n matmul (2n³ FLOPs, median of `calls`), for each n.

  In `dtype` (the models' compute dtype) and JAX's default matmul precision, the one the
  models' own matmuls run in.
  """
  matmul = jax.jit(jnp.matmul)
  rates = {}
  for n in sizes:
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    jax.block_until_ready(matmul(a, a))
    times = []
    for _ in range(calls):
      start = time.perf_counter()
      jax.block_until_ready(matmul(a, a))
      times.append(time.perf_counter() - start)
    rates[n] = 2 * n**3 / statistics.median(times)
  return rates


def dataset_shapes(config, imagenet_size: int) -> tuple[datasets.Spec, tuple[int, ...]]:
  """The Spec of the config's dataset and the shape of one raw (uint8) image of it."""
  if config.dataset == 'mnist':
    return mnist_data.SPEC, (mnist_data.IMAGE_SIDE, mnist_data.IMAGE_SIDE, 1)
  if config.dataset == 'cifar10':
    return cifar10.SPEC, cifar10.SPEC.input_shape
  shape = (imagenet_size, imagenet_size, 3)
  return datasets.Spec(imagenet.NUM_CLASSES, shape, imagenet.preprocess), shape


def build(config, data):
  """The initial state of `config`'s model and method, and its jitted steps by variant.

  Variants: 'plain', 'diagnose' and, where the config runs several steps per call, 'stacked':
  `fajax.build`'s, as the trainer runs them. Raises ConfigError for a config that cannot run.
  """
  built = fajax.build(config, data=data)
  steps = {'plain': built.train_step, 'diagnose': built.diagnose_step}
  if config.steps_per_call > 1:
    steps['stacked'] = built.train_steps
  return built.state, steps


def compile_step(step, state, batch) -> dict:
  """Compiles the jitted `step` (into its cache); its compile time, XLA's FLOPs and peak memory."""
  start = time.perf_counter()
  compiled = step.lower(state, *batch).compile()
  seconds = time.perf_counter() - start
  memory = compiled.memory_analysis()
  peak_bytes = (memory.argument_size_in_bytes + memory.output_size_in_bytes
                + memory.temp_size_in_bytes - memory.alias_size_in_bytes)
  return {'compile_s': seconds,
          'flops': compiled.cost_analysis()['flops'], 'peak_mb': peak_bytes / 2**20}


def device_peak_mb() -> float | None:
  """The process's peak device memory so far, where the device reports it (not on CPU)."""
  stats = jax.devices()[0].memory_stats()
  return stats['peak_bytes_in_use'] / 2**20 if stats else None


def measure_model(name, method_names, diagnosed, batch_size, imagenet_size, compute_dtype, peak,
                  budget_mb, timing_settings) -> dict:
  """Every method's row for one model (BP first), the methods timed together.

  `diagnosed`: the methods whose diagnostics step is timed too; `timing_settings`: the steps,
  rounds and warm-up steps of `timing.time_in_rounds`; a step's time is the median of its
  rounds' medians.
  """
  base = CONFIGS[name]('bp')
  spec, raw_shape = dataset_shapes(base, imagenet_size)
  data = datasets.InMemoryDataset.random(spec, raw_shape, batch_size, batch_size)
  # One replica: the batch and the state carry a leading replica axis of size 1.
  batch = jax.device_put(data.train_images[None]), jax.device_put(data.train_labels[None])
  batches = {'plain': batch, 'diagnose': batch}
  if base.steps_per_call > 1:
    batches['stacked'] = tuple(jnp.stack([x] * base.steps_per_call) for x in batch)
  states, calls, info, skipped = {}, {}, {}, {}
  for method in method_names:
    config = CONFIGS[name](method)
    config.update(compute_dtype=compute_dtype, batch_size=batch_size, eval_batch_size=batch_size,
                  num_train_steps=10_000)
    if budget_mb is not None:
      config.direct_feedback_memory_budget_mb = budget_mb
    try:
      states[method], steps = build(config, data)
    except ConfigError as e:
      skipped[method] = str(e)
      say(f'{name}/{method}: skipped: {e}')
      continue
    for variant in steps:
      if variant == 'diagnose' and method not in diagnosed:
        continue
      calls[method, variant] = timing.Call(
          steps[variant], batches[variant], method,
          base.steps_per_call if variant == 'stacked' else 1)
      info[method, variant] = compile_step(steps[variant], states[method], batches[variant])
      say(f'{name}/{method} ({variant}): compiled in {info[method, variant]["compile_s"]:.1f} s')
  rounds = timing.time_in_rounds(
      calls, states, **timing_settings,
      on_round=lambda k: say(f"{name}: timing round {k + 1}/{timing_settings['rounds']}"))
  seconds = {key: statistics.median(medians) for key, medians in rounds.items()}
  bp_t, bp_flops = seconds['bp', 'plain'], info['bp', 'plain']['flops']
  rows = []
  for method in method_names:
    if method in skipped:
      rows.append({'method': method, 'skipped': skipped[method]})
      continue
    t, plain = seconds[method, 'plain'], info[method, 'plain']
    row = {
        'method': method, 'step_ms': 1e3 * t, 'ratio_to_bp': t / bp_t,
        'images_per_s': batch_size / t, 'compile_s': plain['compile_s'],
        'peak_mb': plain['peak_mb'], 'gflop_per_step': plain['flops'] / 1e9,
        'achieved_gflops': plain['flops'] / t / 1e9,
        'percent_of_peak': 100 * plain['flops'] / t / peak,
        'mfu_percent': 100 * bp_flops / t / peak,
    }
    if (method, 'diagnose') in seconds:
      t_diagnose = seconds[method, 'diagnose']
      row.update(diagnose_step_ms=1e3 * t_diagnose,
                 diagnose_compile_s=info[method, 'diagnose']['compile_s'],
                 diagnostics_overhead_percent=100 * (t_diagnose - t) / (base.log_every_steps * t))
    if (method, 'stacked') in seconds:
      row.update(stacked_step_ms=1e3 * seconds[method, 'stacked'],
                 stacked_ratio_to_bp=seconds[method, 'stacked'] / seconds['bp', 'stacked'],
                 stacked_compile_s=info[method, 'stacked']['compile_s'])
    rows.append(row)
  return {'model': name, 'batch_size': batch_size, 'image_shape': list(raw_shape),
          'dataset': base.dataset, 'log_every_steps': base.log_every_steps,
          'steps_per_call': base.steps_per_call, 'device_peak_mb': device_peak_mb(),
          'rows': rows}


def pipeline_rate(workers: int, num_batches: int = 100) -> float:
  """Images/s of the CIFAR-10 training pipeline alone, over 50,000 random raw images."""
  rng = np.random.default_rng(0)
  source = sources.ArraySource(rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8),
                               rng.integers(0, 10, 50000).astype(np.int32))
  data = datasets.GrainDataset(source, source, cifar10.SPEC, cifar10.augment, cifar10.identity,
                               num_threads=workers)
  batches = data.train_batches(PIPELINE_BATCH, 0, start_step=0, num_steps=num_batches + 5)
  for _ in range(5):  # warm-up: threads started, buffers filled
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * PIPELINE_BATCH / (time.perf_counter() - start)


def to_markdown(result: dict) -> str:
  m, peak = result['machine'], result['matmul_peak']
  lines = [
      '# Speed benchmark', '',
      f"{m['device_kind']} ({m['cpu']}, {m['cpu_count']} cores), jax {m['jax']}, "
      f"{m['date']}; XLA_FLAGS={m['xla_flags'] or '(none)'}; compute in "
      f"{result['settings']['compute_dtype']}. Matmul peak "
      f"{peak['best_gflops']:.1f} GFLOP/s (best of n = "
      f"{', '.join(peak['gflops_by_size'])}).",
  ]
  header = ('method', 'step ms', '× BP', 'images/s', 'compile s', 'peak MB', 'GFLOP/step',
            'achieved GFLOP/s', '% of matmul peak', 'MFU %')
  for model in result['models']:
    lines += ['', f"## {model['model']} (batch {model['batch_size']}, "
              f"{'×'.join(map(str, model['image_shape']))} {model['dataset']} images)", '',
              '| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in model['rows']:
      if 'skipped' in r:
        lines.append(f"| {r['method']} | skipped: {r['skipped']} |" + ' |' * (len(header) - 2))
        continue
      lines.append(
          f"| {r['method']} | {r['step_ms']:.2f} | {r['ratio_to_bp']:.3f} | "
          f"{r['images_per_s']:.1f} | {r['compile_s']:.1f} | {r['peak_mb']:.1f} | "
          f"{r['gflop_per_step']:.3f} | {r['achieved_gflops']:.1f} | "
          f"{r['percent_of_peak']:.1f} | {r['mfu_percent']:.1f} |")
    stacked = [r for r in model['rows'] if 'stacked_step_ms' in r]
    if stacked:
      lines += ['', f"{model['steps_per_call']} steps per call (as the trainer runs them "
                "between logging steps), ms per step (× BP): " + '; '.join(
                    f"{r['method']} {r['stacked_step_ms']:.2f} ({r['stacked_ratio_to_bp']:.3f})"
                    for r in stacked)]
    diagnosed = [r for r in model['rows'] if 'diagnose_step_ms' in r]
    lines += ['', f"Alignment diagnostics every {model['log_every_steps']} steps: " + '; '.join(
        f"{r['method']} {r['diagnose_step_ms']:.2f} ms per diagnosed step "
        f"(+{r['diagnostics_overhead_percent']:.2f}% of training time)" for r in diagnosed)]
    if model['device_peak_mb'] is not None:
      lines.append(f"Device peak memory through this model: {model['device_peak_mb']:.0f} MB.")
  if 'pipeline' in result:
    p = result['pipeline']
    lines += ['', f"CIFAR-10 input pipeline ({p['workers']} threads, batch {PIPELINE_BATCH}): "
              f"{p['images_per_s']:.0f} images/s"
              + (f", {p['over_fastest_cifar10_training']:.1f}× the fastest CIFAR-10 training "
                 f"rate ({p['fastest_cifar10_training']})."
                 if p['over_fastest_cifar10_training'] else '.')]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  host_memory.retain_freed_buffers()  # as the trainer does
  method_names = list(methods.METHODS) if _METHODS.value == ['all'] else _METHODS.value
  unknown = set(method_names) - set(methods.METHODS) | set(_MODELS.value) - set(CONFIGS)
  if unknown:
    raise app.UsageError(f'unknown models or methods: {", ".join(sorted(unknown))}')
  method_names = ['bp'] + [m for m in method_names if m != 'bp']
  diagnosed = {'bp'} | (
      set(method_names) if _DIAGNOSE_METHODS.value == ['all'] else set(_DIAGNOSE_METHODS.value))
  batch_sizes = {name: int(n) for name, n in (b.split('=') for b in _BATCH_SIZES.value)}
  on_cpu = jax.default_backend() == 'cpu'
  imagenet_size = _IMAGENET_SIZE.value or (64 if on_cpu else 224)
  compute_dtype = _COMPUTE_DTYPE.value or ('float32' if on_cpu else 'bfloat16')
  sizes = [int(n) for n in _MATMUL_SIZES.value] or (
      [1024, 2048] if on_cpu else [2048, 4096, 8192])
  settings = {'steps': _STEPS.value, 'rounds': _ROUNDS.value, 'warmup': _WARMUP.value}

  rates = matmul_peak(sizes, compute_dtype)
  peak = max(rates.values())
  say(f'matmul peak: {peak / 1e9:.1f} GFLOP/s')
  result = {'machine': machine(),
            'settings': {**settings, 'imagenet_size': imagenet_size, 'compute_dtype': compute_dtype},
            'matmul_peak': {'best_gflops': peak / 1e9,
                            'gflops_by_size': {str(n): r / 1e9 for n, r in rates.items()}},
            'models': []}
  for name in _MODELS.value:
    batch_size = batch_sizes.get(name) or (
        CPU_BATCH_SIZES[name] if on_cpu else CONFIGS[name]('bp').batch_size)
    result['models'].append(
        measure_model(name, method_names, diagnosed, batch_size, imagenet_size, compute_dtype,
                      peak, _DIRECT_BUDGET_MB.value, settings))
  if not _SKIP_PIPELINE.value:
    say('CIFAR-10 input pipeline')
    rate = pipeline_rate(_WORKERS.value)
    cifar = [(r['images_per_s'], f"{model['model']}/{r['method']}")
             for model in result['models'] if model['dataset'] == 'cifar10'
             for r in model['rows'] if 'skipped' not in r]
    fastest = max(cifar, default=(None, None))
    result['pipeline'] = {
        'workers': _WORKERS.value, 'images_per_s': rate, 'fastest_cifar10_training': fastest[1],
        'over_fastest_cifar10_training': rate / fastest[0] if fastest[0] else None}

  timing.publish(to_markdown(result), result, _OUT.value, 'suite')


if __name__ == '__main__':
  sys.exit(app.run(main))
