"""Training images/s of each model, and of the CIFAR-10 input pipeline alone.

    python benchmarks/throughput.py [--steps=20] [--out=DIR]

Models run one jitted BP training step (SGD) at a small batch on random data; ImageNet models
at a reduced resolution on CPU (`--imagenet_size`). The pipeline is the real CIFAR-10 grain
pipeline (pad-4 crop + flip, batch 128, `--workers` threads) over 50,000 random images in the
raw format, measured without any training. Its rate should be at least 3× the training rate of
every CIFAR-10 model, or the input would slow training down.
"""

import functools
import json
import os
import statistics
import sys
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging

from fajax import datasets
from fajax import methods
from fajax import training
from fajax.configs import common
from fajax.datasets import cifar10, sources

_STEPS = flags.DEFINE_integer('steps', 20, 'Timed training steps per model.')
_IMAGENET_SIZE = flags.DEFINE_integer('imagenet_size', 64, 'Image side for ImageNet models.')
_WORKERS = flags.DEFINE_integer('workers', 4, 'Threads of the input pipeline.')
_OUT = flags.DEFINE_string('out', '', 'Folder for throughput.json and throughput.md.')

MODELS = (  # model, input side, classes, batch
    ('cifar_convnet', 32, 10, 32),
    ('cifar_convnet_bn', 32, 10, 32),
    ('resnet20', 32, 10, 32),
    ('resnet18', None, 1000, 16),
    ('alexnet', None, 1000, 16),
)


def training_rate(model_name, side, classes, batch_size):
  config = common.get_config()
  config.update(dict(model=model_name, optimizer='sgd', learning_rate=0.01, method='bp'))
  spec = datasets.Spec(classes, (side, side, 3), cifar10.preprocess)
  optimizer, _ = training.create_optimizer(config, total_steps=1000)
  method = methods.build(config, optimizer)
  model, state = training.create_train_state(config, spec, optimizer, method)
  step = jax.jit(functools.partial(training.train_step, model=model, optimizer=optimizer,
                                   method=method), donate_argnums=0)
  rng = np.random.default_rng(0)
  images = jax.device_put(rng.integers(0, 256, (batch_size, side, side, 3), dtype=np.uint8))
  labels = jax.device_put(rng.integers(0, classes, batch_size).astype(np.int32))
  for _ in range(3):
    state, metrics = step(state, images, labels)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    state, metrics = step(state, images, labels)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return batch_size / statistics.median(times)


def pipeline_rate(num_batches=100, batch_size=128):
  rng = np.random.default_rng(0)
  source = sources.ArraySource(rng.integers(0, 256, (50000, 32, 32, 3), dtype=np.uint8),
                               rng.integers(0, 10, 50000).astype(np.int32))
  data = datasets.GrainDataset(source, source, cifar10.SPEC, cifar10.augment, cifar10.identity,
                               num_threads=_WORKERS.value)
  batches = data.train_batches(batch_size, 0, start_step=0, num_steps=num_batches + 5)
  for _ in range(5):  # warm-up: threads started, buffers filled
    next(batches)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(batches)
  return num_batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  rows = []
  for name, side, classes, batch in MODELS:
    side = side or _IMAGENET_SIZE.value
    rate = training_rate(name, side, classes, batch)
    rows.append({'model': name, 'image_side': side, 'batch': batch,
                 'train_images_per_s': round(rate, 1)})
    print(f'{name}: {rate:.1f} training images/s ({side}×{side}, batch {batch})', flush=True)
  pipeline = pipeline_rate()
  cifar_rates = [r['train_images_per_s'] for r in rows if r['image_side'] == 32]
  ratio = pipeline / max(cifar_rates)
  print(f'CIFAR-10 pipeline ({_WORKERS.value} threads): {pipeline:.0f} images/s, '
        f'{ratio:.1f}× the fastest CIFAR-10 training rate')
  result = {'device': str(jax.devices()[0]), 'cpu_count': os.cpu_count(),
            'date': time.strftime('%Y-%m-%d'), 'jax': jax.__version__, 'models': rows,
            'cifar10_pipeline_images_per_s': round(pipeline, 1),
            'pipeline_over_fastest_cifar_training': round(ratio, 2)}
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, 'throughput.json'), 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  sys.exit(app.run(main))
