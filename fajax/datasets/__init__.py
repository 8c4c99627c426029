"""Dataset loaders by config name."""

import ml_collections

from fajax.datasets import cifar10
from fajax.datasets import imagenet
from fajax.datasets import mnist
from fajax.datasets.base import (
    DATA_DIR_ENV, TEST, VALIDATION, Dataset, GrainDataset, InMemoryDataset, Spec, data_dir,
    epoch_batches, replica_batches, stack_arrays
)

LOADERS = {
    'mnist': lambda config: mnist.load(data_dir(config)),
    'cifar10': cifar10.load,
    'imagenet2012': imagenet.load,
}


def load(config: ml_collections.ConfigDict) -> InMemoryDataset | GrainDataset:
  """The config's dataset, limited to its first examples (`*_examples_limit`)."""
  dataset = LOADERS[config.dataset](config)
  return dataset.take(config.train_examples_limit, config.eval_examples_limit)


__all__ = [
    'DATA_DIR_ENV', 'Dataset', 'GrainDataset', 'InMemoryDataset', 'LOADERS', 'Spec', 'TEST',
    'VALIDATION', 'data_dir', 'epoch_batches', 'load', 'replica_batches', 'stack_arrays',
]
