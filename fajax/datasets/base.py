"""Datasets held whole in memory, with deterministic shuffled batching."""

import dataclasses
from collections.abc import Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class InMemoryDataset:
  """Raw train and test splits, and the function that turns raw images into model inputs.

  `preprocess` runs inside the jitted step, so the raw (uint8) images are what sits in memory.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  preprocess: Callable[[jax.Array], jax.Array]

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


def epoch_batches(num_examples: int, batch_size: int, seed: int, epoch: int) -> np.ndarray:
  """Example indices of each batch of one epoch, shape [steps_per_epoch, batch_size].

  A fresh permutation per epoch that depends only on (seed, epoch), so a resumed run sees the
  same batches as one never interrupted. The incomplete last batch is dropped.
  """
  permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
  steps = num_examples // batch_size
  return permutation[: steps * batch_size].reshape(steps, batch_size).astype(np.int32)
