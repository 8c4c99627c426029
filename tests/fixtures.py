"""Small datasets, in memory or written in the real on-disk formats, and built experiments."""

import pickle
import re
import struct

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import fajax
from fajax import datasets
from fajax import experiments
from fajax.configs import common
from fajax.configs import mnist
from fajax.datasets import cifar10
from fajax.datasets import mnist as mnist_data
from fajax.layers import default_kernel_init


# A strided slice in lowered StableHLO ([start:limit:stride] on some axis): pooling's forward-only
# route, the maximum of strided views (`fajax.models.common.max_pool`).
STRIDED_SLICE = re.compile(r'stablehlo\.slice [^\n]*\d:\d+:\d')


def idx_bytes(magic, array):
  """`array` in MNIST's IDX format: big-endian magic number and dimensions, then uint8 data."""
  header = struct.pack('>I', magic) + b''.join(struct.pack('>I', d) for d in array.shape)
  return header + array.astype(np.uint8).tobytes()


def write_cifar10(root, records_per_file=20, seed=0):
  """`root`/cifar10/cifar-10-batches-py with data_batch_1..5 and test_batch, as the real ones.

  Each image's red, green and blue planes are constant (label·20, 1, 2), so a test can check the
  channel-major layout.
  """
  directory = root / cifar10.BATCHES_DIR
  directory.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE):
    labels = rng.integers(0, 10, records_per_file)
    planes = [np.repeat(labels[:, None] * 20, 1024, axis=1),
              np.full((records_per_file, 1024), 1), np.full((records_per_file, 1024), 2)]
    batch = {b'batch_label': name.encode(), b'labels': labels.tolist(),
             b'data': np.concatenate(planes, axis=1).astype(np.uint8),
             b'filenames': [b'x.png'] * records_per_file}
    with open(directory / name, 'wb') as f:
      pickle.dump(batch, f)
  return directory


def single(tree):
  """The first replica of a tree with a leading replica axis (a train state, metrics), on the
  host."""
  return jax.tree.map(lambda x: np.asarray(x)[0], jax.device_get(tree))


def random_mnist(num_train=256, num_test=64, seed=0):
  """MNIST-shaped random data: 28×28×1 uint8, padded to 32×32 by the MNIST spec."""
  return datasets.InMemoryDataset.random(
      mnist_data.SPEC, (mnist_data.IMAGE_SIDE, mnist_data.IMAGE_SIDE, 1), num_train, num_test, seed)


def mnist_experiment(method, data=None, **overrides):
  """`fajax.build` of the MNIST column's config for `method` (fields overridden), on random
  MNIST-shaped data unless `data` is given."""
  config = mnist.get_config(method)
  config.update(overrides)
  return fajax.build(config, data=data or random_mnist())


class TinyMLP(nnx.Module):
  """A caller's model: flattened 8×8 images → `hidden` → 12 → 3 classes, from feedback layers,
  with DFA taps on the two hidden layers."""

  def __init__(self, hidden=16, *, rngs):
    init = dict(kernel_init=default_kernel_init, rngs=rngs)
    self.fc1 = fajax.FeedbackDense(64, hidden, **init)
    self.fc2 = fajax.FeedbackDense(hidden, 12, **init)
    self.fc3 = fajax.FeedbackDense(12, 3, **init)
    self.direct = fajax.DirectFeedback()

  def __call__(self, x):
    path = self.direct.path(x.shape[0])
    h = path.activate('fc1', self.fc1(x.reshape(x.shape[0], -1)), nnx.relu)
    h = path.activate('fc2', self.fc2(h), nnx.relu)
    return path.finish(self.fc3(h))


def scaled_to_unit(images):
  return images.astype(jnp.float32) / 255


def tiny_data(num_train=64, num_test=20, seed=0):
  """Random 8×8×1 uint8 images of 3 classes, scaled to [0, 1] by the spec (a function defined
  once, so that builds on equal data share their programs: `fajax.programs`)."""
  spec = datasets.Spec(3, (8, 8, 1), scaled_to_unit)
  return datasets.InMemoryDataset.random(spec, (8, 8, 1), num_train, num_test, seed)


def experiment_config(name, **fields):
  """The config of the packaged experiment `name` (fajax/experiments/), fields overridden."""
  # Imported here: fajax.column defines its command's required flags on import, which a
  # command started from a script that imports this module (tests/tiny_run.py) would demand.
  from fajax import column  # pylint: disable=g-import-not-at-top
  config = column.load_config(experiments.path_of(name))
  config.update(fields)
  return config


def config_flags(fields: dict) -> list[str]:
  """`fields` as a command line's `--config.<name>=<value>` overrides."""
  return [f'--config.{name}={value}' for name, value in fields.items()]


def tiny_config(method='fa', **overrides):
  """A config with no model or dataset of its own, for `TinyMLP` on `tiny_data`."""
  config = common.get_config()
  config.update({**dict(method=method, optimizer='sgd', learning_rate=0.05, batch_size=16,
                        eval_batch_size=10, num_train_steps=8, log_every_steps=2,
                        checkpoint_every_steps=4), **overrides})
  return config


class PlainCNN(nnx.Module):
  """A caller's model in plain NNX for tiny_data's 8×8×1 images and 3 classes."""

  def __init__(self, rngs):
    self.conv1 = nnx.Conv(1, 4, (3, 3), rngs=rngs)
    self.conv2 = nnx.Conv(4, 8, (3, 3), strides=2, padding='VALID', rngs=rngs)
    self.fc = nnx.Linear(8, 16, rngs=rngs)
    self.out = nnx.Linear(16, 3, rngs=rngs)

  def __call__(self, x):
    x = nnx.max_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
    x = jnp.mean(nnx.relu(self.conv2(x)), axis=(1, 2))
    return self.out(nnx.relu(self.fc(x)))


def mlp_batch() -> tuple[jax.Array, jax.Array]:
  """Eight examples of six features in three classes: the batch the DFA tests feed their
  d1 → d2 → d3 → out MLPs (`mlp_by_hand`)."""
  return jax.random.normal(jax.random.key(7), (8, 6)), jnp.arange(8) % 3


def mlp_by_hand(net, x, labels):
  """A d1 → d2 → d3 → out ReLU MLP's forward pass written out: the hidden layers'
  pre-activations (a1, a2, a3) and outputs (h1, h2, h3), and the error e = ∂L/∂logits of the
  mean softmax cross-entropy L, for checking feedback signals and updates by hand."""
  kernel = lambda name: getattr(net, name).kernel[...]
  bias = lambda name: getattr(net, name).bias[...]
  pre_activations, hidden, h = [], [], x
  for name in ('d1', 'd2', 'd3'):
    pre_activations.append(h @ kernel(name) + bias(name))
    h = jax.nn.relu(pre_activations[-1])
    hidden.append(h)
  logits = h @ kernel('out') + bias('out')
  error = (jax.nn.softmax(logits) - jax.nn.one_hot(labels, logits.shape[-1])) / len(x)
  return pre_activations, hidden, error
