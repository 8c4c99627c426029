"""`GrainDataset`: random-access sources of (image, label) records streamed through a grain
pipeline with parallel workers (CIFAR-10, ImageNet, `tfds:<name>`); see `fajax.datasets.base`
for what every dataset gives the trainer."""

import dataclasses
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from fajax.datasets.base import TEST, VALIDATION, Spec, _check_hold_out, _padded_ranges
from fajax.errors import ConfigError


class RecordSource(Protocol):
  """What grain reads records from: a length and (image uint8 HWC, label) by index."""

  def __len__(self) -> int: ...

  def __getitem__(self, index: int) -> tuple: ...


@dataclasses.dataclass(frozen=True)
class GrainDataset:
  """Random-access sources of (image, label) records, streamed through grain.

  `augment(image, rng)` runs per training record in the workers (numpy, uint8 in and out);
  `eval_transform(image)` per test record; `spec.preprocess` on the device inside the step.
  """

  train_source: 'RecordSource'
  test_source: 'RecordSource'
  spec: Spec
  augment: Callable[[np.ndarray, np.random.Generator], np.ndarray]
  eval_transform: Callable[[np.ndarray], np.ndarray]
  num_threads: int = 4
  prefetch: int = 8
  validation_source: 'RecordSource | None' = None

  @property
  def num_train(self) -> int:
    return len(self.train_source)

  def take(self, train_examples: int, test_examples: int) -> 'GrainDataset':
    """The first examples of each split; 0 keeps the whole split."""
    first = lambda source, n: _Slice(source, 0, min(n, len(source))) if n else source
    return dataclasses.replace(
        self,
        train_source=first(self.train_source, train_examples),
        test_source=first(self.test_source, test_examples),
    )

  def hold_out(self, examples: int) -> 'GrainDataset':
    """The last `examples` training records become the validation split (read like the test
    split, without augmentation); training keeps the rest."""
    _check_hold_out(examples, self.num_train)
    keep = self.num_train - examples
    return dataclasses.replace(
        self, train_source=_Slice(self.train_source, 0, keep),
        validation_source=_Slice(self.train_source, keep, self.num_train))

  def _read_options(self):
    return _grain().ReadOptions(num_threads=self.num_threads, prefetch_buffer_size=self.prefetch)

  def train_batches(
      self, batch_size, seed, start_step, num_steps, shard_index=0, shard_count=1
  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    steps_per_epoch = self.num_train // batch_size
    epochs = (start_step + num_steps) // steps_per_epoch + 1
    augment = self.augment
    grain = _grain()
    # Every process defines the same global stream of augmented records (record i of the
    # stream belongs to step i // batch_size) and reads only its own rows of each batch.
    records = (
        grain.MapDataset.source(self.train_source)
        .shuffle(seed=seed)
        .repeat(epochs)
        .random_map(lambda record, rng: (augment(record[0], rng), record[1]), seed=seed)
    )
    per_shard = batch_size // shard_count

    def own_record(k):
      step, row = divmod(k, per_shard)
      return records[(start_step + step) * batch_size + shard_index * per_shard + row]

    dataset = (
        grain.MapDataset.range(num_steps * per_shard)
        .map(own_record)
        .batch(per_shard)
        .map(lambda batch: (batch[0], batch[1].astype(np.int32)))
    )
    yield from dataset.to_iter_dataset(self._read_options())

  def eval_batches(self, batch_size, split: str = TEST, shard_index: int = 0,
                   shard_count: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """This shard's rows of the padded batches of the test split, or of the validation split
    `hold_out` made: a process decodes only the records it evaluates."""
    source = {TEST: self.test_source, VALIDATION: self.validation_source}[split]
    if source is None:
      raise ConfigError('no validation split to evaluate: set config.validation_examples > 0')
    transform = self.eval_transform
    grain = _grain()

    def read(batch):
      idx, mask = batch
      records = [source[int(i)] for i in idx]
      images = np.stack([transform(image) for image, _ in records])
      return images, np.array([label for _, label in records], np.int32), mask

    batches = grain.MapDataset.source(list(
        _padded_ranges(len(source), batch_size, shard_index, shard_count))).map(read)
    yield from batches.to_iter_dataset(self._read_options())


def _grain():
  """grain, imported on first use: runs on in-memory data (MNIST) never load it."""
  import grain  # pylint: disable=g-import-not-at-top
  return grain


class _Slice:
  """Records [start, stop) of a random-access source."""

  def __init__(self, source, start, stop):
    self.source, self.start, self.n = source, start, stop - start

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    if not 0 <= i < self.n:
      raise IndexError(i)
    return self.source[self.start + i]
