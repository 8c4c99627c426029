"""Dataset loaders by config name."""

import os

import ml_collections

from fajax.datasets import mnist
from fajax.datasets.base import InMemoryDataset, epoch_batches

DATA_DIR_ENV = 'FAJAX_DATA_DIR'
LOADERS = {'mnist': mnist.load}


def data_dir(config: ml_collections.ConfigDict) -> str:
  """`config.data_dir`, else $FAJAX_DATA_DIR, else '' (meaning: read through TFDS)."""
  return config.data_dir or os.environ.get(DATA_DIR_ENV, '')


def load(config: ml_collections.ConfigDict) -> InMemoryDataset:
  dataset = LOADERS[config.dataset](data_dir(config))
  return dataset.take(config.train_examples_limit, config.eval_examples_limit)


__all__ = ['DATA_DIR_ENV', 'InMemoryDataset', 'data_dir', 'epoch_batches', 'load']
