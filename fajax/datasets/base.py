"""What the trainer reads from a dataset (`Dataset`), and the two built-in kinds.

    data.num_train; data.spec: num_classes, input_shape, preprocess(raw batch) -> model input
    for images, labels in data.train_batches(batch_size, seed, start_step, num_steps): ...
    for images, labels, mask in data.eval_batches(batch_size): ...

`InMemoryDataset` (MNIST) keeps both splits on the device and gathers each batch there:
nothing crosses from the host per step. `GrainDataset` (CIFAR-10, ImageNet, `tfds:<name>`;
`fajax.datasets.streamed`) streams from a random-access source through a grain pipeline with
parallel workers. In both,
the batch of training step s depends only on (seed, s), so a resumed run sees exactly the
batches of an uninterrupted one, and `shard_index/shard_count` give each process its own
slice.
"""

import dataclasses
import math
import os
from collections.abc import Callable, Iterator
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np

from fajax import user_cache
from fajax.errors import ConfigError


DATA_DIR_ENV = 'FAJAX_DATA_DIR'
TEST = 'test'
VALIDATION = 'validation'


def data_dir(config) -> str:
  """The folder of the raw datasets and of fajax's derived data files: `config.data_dir`, else
  $FAJAX_DATA_DIR, else $XDG_CACHE_HOME/fajax/data (~/.cache/fajax/data)."""
  return os.path.expanduser(
      config.data_dir or os.environ.get(DATA_DIR_ENV) or user_cache.folder('data'))


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """Example indices of each batch of one epoch, shape [steps_per_epoch, batch_size].

  A fresh permutation per epoch that depends only on (seed, epoch). The incomplete last batch
  is dropped.
  """
  permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
  steps = num_examples // batch_size
  return permutation[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)


# JAX's CPU client takes a NumPy array as a device array without copying it when its data
# starts on a boundary of this many bytes; NumPy's own arrays start on 16 or 32, and are copied.
HOST_ALIGNMENT = 64


def aligned_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
  """An uninitialised array whose data starts on a HOST_ALIGNMENT-byte boundary: on the CPU
  `jax.device_put` then uses its memory in place, so that a dataset in memory is held once, not
  twice (MNIST's training images: 47 MB of the MNIST command's peak; BUILD_NOTES.md, "fajax
  against PyTorch on one CPU"). The device array shares the memory: the array must not change
  afterwards."""
  dtype = np.dtype(dtype)
  size = math.prod(shape) * dtype.itemsize
  buffer = np.empty(size + HOST_ALIGNMENT, np.uint8)
  start = -buffer.ctypes.data % HOST_ALIGNMENT
  return buffer[start:start + size].view(dtype).reshape(shape)


def _check_hold_out(examples: int, num_train: int) -> None:
  if not 0 < examples < num_train:
    raise ConfigError(f'validation_examples={examples} must be between 0 and the '
                      f'{num_train} training examples')


def stack_arrays(arrays):
  """NumPy arrays stacked by NumPy (on the host), device arrays by JAX (on the device)."""
  return (np.stack if isinstance(arrays[0], np.ndarray) else jnp.stack)(arrays)


def replica_batches(data, seeds, batch_size, start_step, num_steps, shard_index=0,
                    shard_count=1) -> Iterator[tuple]:
  """(images, labels) of each step for every replica, stacked on a leading replica axis.

  Replica i reads the batches of `seeds[i]`; replicas that share a seed share one stream.
  """
  unique = sorted(set(int(s) for s in seeds))
  streams = [data.train_batches(batch_size, seed, start_step, num_steps, shard_index,
                                shard_count) for seed in unique]
  order = [unique.index(int(s)) for s in seeds]
  for batches in zip(*streams):
    yield tuple(stack_arrays([batches[k][part] for k in order]) for part in (0, 1))


def _padded_ranges(n: int, batch_size: int, shard_index: int = 0, shard_count: int = 1):
  """(indices, mask) of this shard's rows of consecutive eval batches; the last batch padded
  with the split's final index."""
  per_shard = batch_size // shard_count
  for start in range(shard_index * per_shard, n + shard_index * per_shard, batch_size):
    idx = np.arange(start, start + per_shard)
    yield np.minimum(idx, n - 1), (idx < n).astype(np.float32)


def as_float32(images: jax.Array) -> jax.Array:
  return images.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Spec:
  """What the model needs to know of a dataset.

  `preprocess` runs inside the jitted step on raw batches (MNIST's and CIFAR-10's are uint8),
  producing model inputs of `input_shape` (per example): raw data stays small in memory and on
  the way to the device. The default only casts to float32.
  """

  num_classes: int
  input_shape: tuple[int, ...]
  preprocess: Callable[[jax.Array], jax.Array] = as_float32


class Dataset(Protocol):
  """The protocol of `data=` in `fajax.build` / `fajax.train`; the built-in datasets follow it.

  - `spec`: the number of classes, the shape of one model input, and `preprocess`.
  - `num_train`: the number of training examples; an epoch is `num_train // batch_size` steps.
  - `train_batches(...)`: (images, labels) for each step from `start_step` on, `num_steps` of
    them, with labels int32 in [0, num_classes). Each process takes rows
    `[shard_index·b/shard_count, (shard_index+1)·b/shard_count)` of every global batch b. For an
    exact resume, the batch of step s must depend only on (seed, s).
  - `eval_batches(batch_size, split='test', shard_index=0, shard_count=1)`: (images, labels,
    mask) covering the split once in global batches of `batch_size` rows, the last one padded
    (mask 1 for real examples, 0 for padding); each process reads only its rows of each batch,
    taken as in `train_batches`.
  - For `config.validation_examples`: `hold_out(n)`, the dataset with its last n training
    examples moved to a validation split, which `eval_batches(..., split='validation')` reads.
  Arrays may be NumPy or JAX arrays.
  """

  spec: Spec

  @property
  def num_train(self) -> int: ...

  def train_batches(self, batch_size: int, seed: int, start_step: int, num_steps: int,
                    shard_index: int = 0, shard_count: int = 1) -> Iterator[tuple]: ...

  def eval_batches(self, batch_size: int, split: str = 'test', shard_index: int = 0,
                   shard_count: int = 1) -> Iterator[tuple]: ...


@jax.jit
def _gather(images, labels, batches, index):
  idx = batches[index]
  return images[idx], labels[idx]


@dataclasses.dataclass(frozen=True)
class InMemoryDataset:
  """Raw train and test splits as arrays, and a validation split once `hold_out` made one."""

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  spec: Spec
  validation_images: np.ndarray | None = None
  validation_labels: np.ndarray | None = None

  @classmethod
  def random(cls, spec: Spec, raw_shape: tuple[int, ...], num_train: int, num_test: int,
             seed: int = 0) -> 'InMemoryDataset':
    """Uniform random uint8 images of `raw_shape` with random labels: for benchmarks and tests."""
    rng = np.random.default_rng(seed)
    split: Callable[[int], tuple[np.ndarray, np.ndarray]] = lambda n: (rng.integers(0, 256, (n, *raw_shape), dtype=np.uint8),
                       rng.integers(0, spec.num_classes, n).astype(np.int32))
    return cls(*split(num_train), *split(num_test), spec)

  @property
  def num_train(self) -> int:
    return len(self.train_labels)

  def take(self, train_examples: int, test_examples: int) -> 'InMemoryDataset':
    """The first examples of each split; 0 keeps the whole split."""
    train = slice(train_examples or None)
    test = slice(test_examples or None)
    return dataclasses.replace(
        self,
        train_images=self.train_images[train],
        train_labels=self.train_labels[train],
        test_images=self.test_images[test],
        test_labels=self.test_labels[test],
    )

  def hold_out(self, examples: int) -> 'InMemoryDataset':
    """The last `examples` training examples become the validation split; training keeps the
    rest."""
    _check_hold_out(examples, self.num_train)
    keep = self.num_train - examples
    return dataclasses.replace(
        self,
        train_images=self.train_images[:keep], train_labels=self.train_labels[:keep],
        validation_images=self.train_images[keep:], validation_labels=self.train_labels[keep:],
    )

  def train_batches(
      self, batch_size, seed, start_step, num_steps, shard_index=0, shard_count=1
  ) -> Iterator[tuple[jax.Array, jax.Array]]:
    """Batches on the device; with several shards, each takes its slice of every batch."""
    images, labels = jax.device_put(self.train_images), jax.device_put(self.train_labels)
    steps_per_epoch = self.num_train // batch_size
    per_shard = batch_size // shard_count
    loaded_epoch, batches = -1, None
    for step in range(start_step, start_step + num_steps):
      epoch, index = divmod(step, steps_per_epoch)
      if epoch != loaded_epoch:
        loaded_epoch = epoch
        batches = epoch_batches(self.num_train, batch_size, seed, epoch)
        shard = slice(shard_index * per_shard, (shard_index + 1) * per_shard)
        batches = jax.device_put(batches[:, shard])
      yield _gather(images, labels, batches, index)

  def eval_batches(self, batch_size, split: str = TEST, shard_index: int = 0,
                   shard_count: int = 1) -> Iterator[tuple[jax.Array, jax.Array, np.ndarray]]:
    """This shard's rows of the padded batches of the test split, or of the validation split
    `hold_out` made."""
    arrays = {TEST: (self.test_images, self.test_labels),
              VALIDATION: (self.validation_images, self.validation_labels)}[split]
    images, labels = map(jax.device_put, arrays)
    for idx, mask in _padded_ranges(len(labels), batch_size, shard_index, shard_count):
      yield images[idx], labels[idx], mask
