"""Dataset loaders by config name."""

from collections.abc import Callable

import ml_collections

from fajax.datasets import cifar10
from fajax.datasets import imagenet
from fajax.datasets import mnist
from fajax.datasets import tfds_classification
from fajax.datasets.base import (
    DATA_DIR_ENV, TEST, VALIDATION, Dataset, InMemoryDataset, Spec, data_dir, epoch_batches,
    replica_batches, stack_arrays
)
from fajax.datasets.streamed import GrainDataset

LOADERS: dict[str, Callable[[ml_collections.ConfigDict], InMemoryDataset | GrainDataset]] = {
    'mnist': lambda config: mnist.load(data_dir(config)),
    'cifar10': cifar10.load,
    'imagenet2012': imagenet.load,
}
TFDS_PREFIX = tfds_classification.PREFIX


def load(config: ml_collections.ConfigDict) -> InMemoryDataset | GrainDataset:
  """The config's dataset (a name in `LOADERS`, or `tfds:<name>` for any TFDS
  image-classification dataset), limited to its first examples (`*_examples_limit`)."""
  load_dataset = (tfds_classification.load if config.dataset.startswith(TFDS_PREFIX)
                  else LOADERS[config.dataset])
  return load_dataset(config).take(config.train_examples_limit, config.eval_examples_limit)


__all__ = [
    'DATA_DIR_ENV', 'Dataset', 'GrainDataset', 'InMemoryDataset', 'LOADERS', 'Spec', 'TEST',
    'TFDS_PREFIX', 'VALIDATION', 'data_dir', 'epoch_batches', 'load', 'replica_batches',
    'stack_arrays',
]
