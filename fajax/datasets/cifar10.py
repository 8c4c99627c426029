"""CIFAR-10 from the original "python" batches in `<data_dir>/cifar10/cifar-10-batches-py/`,
downloaded and extracted there on first use."""

import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np

from fajax.datasets import base
from fajax.datasets import download
from fajax.datasets import sources
from fajax.datasets import streamed
from fajax.errors import DataError

TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILE = 'test_batch'
BATCHES_FOLDER = 'cifar-10-batches-py'
BATCHES_DIR = os.path.join('cifar10', BATCHES_FOLDER)
ARCHIVE = 'cifar-10-python.tar.gz'
MIRRORS = ('https://www.cs.toronto.edu/~kriz/',)  # $FAJAX_DATA_MIRROR replaces it
# As Keras's cifar10.load_data checks it (its published MD5 is c58f30108f718f92721af3b95e74349a).
ARCHIVE_SHA256 = '6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce'
NUM_CLASSES = 10
# Per-channel mean and standard deviation of the training images scaled to [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
PAD = 4


def read_batch(path: str) -> tuple[np.ndarray, np.ndarray]:
  """One pickled batch: uint8 images [N, 32, 32, 3] (from channel-major rows) and labels."""
  if not os.path.exists(path):
    raise DataError(
        f'CIFAR-10 file {path} not found: delete its folder, and fajax extracts it again from '
        f'{ARCHIVE} (downloading that first if it is absent)'
    )
  try:
    with open(path, 'rb') as f:
      batch = pickle.load(f, encoding='bytes')
    data = np.asarray(batch[b'data'])
    labels = np.asarray(batch[b'labels'])
  except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError) as e:
    raise DataError(
        f'{path} is not a valid CIFAR-10 batch ({type(e).__name__}: {e}); the file is damaged '
        f'or incomplete: delete its folder, and fajax extracts it again from {ARCHIVE}'
    ) from e
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
    raise DataError(
        f'{path} holds data of shape {data.shape} and type {data.dtype}, expected uint8 rows of '
        '3072 bytes'
    )
  if len(labels) != len(data) or (len(labels) and labels.max() >= NUM_CLASSES):
    raise DataError(f'{path} has {len(labels)} labels for {len(data)} images, or labels past 9')
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def read_split(directory: str, files) -> sources.ArraySource:
  batches = [read_batch(os.path.join(directory, name)) for name in files]
  return sources.ArraySource(
      np.concatenate([images for images, _ in batches]),
      np.concatenate([labels for _, labels in batches]),
  )


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Zero-pad by 4, random 32×32 crop, random horizontal flip."""
  padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)))
  top, left = rng.integers(0, 2 * PAD + 1, size=2)
  crop = padded[top : top + 32, left : left + 32]
  return crop[:, ::-1] if rng.random() < 0.5 else crop


def identity(image: np.ndarray) -> np.ndarray:
  return image


def preprocess(images: jax.Array) -> jax.Array:
  images = images.astype(jnp.float32) / 255.0
  return (images - jnp.asarray(MEAN)) / jnp.asarray(STD)


SPEC = base.Spec(NUM_CLASSES, (32, 32, 3), preprocess)


def load(config) -> streamed.GrainDataset:
  """CIFAR-10 from `data_dir`/cifar10/cifar-10-batches-py, downloading and extracting
  cifar-10-python.tar.gz there first when that folder is absent."""
  data_dir = base.data_dir(config)
  directory = os.path.join(data_dir, BATCHES_DIR)
  if not os.path.isdir(directory):
    archive = download.fetch(data_dir, 'cifar10', ARCHIVE, ARCHIVE_SHA256, MIRRORS)
    download.extract_folder(archive, BATCHES_FOLDER)
  train, test = read_split(directory, TRAIN_FILES), read_split(directory, (TEST_FILE,))
  return streamed.GrainDataset(train, test, SPEC, augment, identity,
                           num_threads=config.data_workers)
