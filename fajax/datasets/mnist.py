"""MNIST from the original IDX files, or from TFDS when no data directory is given."""

import gzip
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from fajax.datasets import base
from fajax.datasets import sources
from fajax.errors import DataError

FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 60000),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte', 10000),
}
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
IMAGE_SIDE = 28
NUM_CLASSES = 10
# Mean and standard deviation of the training pixels scaled to [0, 1].
PIXEL_MEAN = 0.1307
PIXEL_STD = 0.3081


def _read_bytes(path: str) -> bytes:
  """The file's bytes, decompressed if its name ends in .gz."""
  try:
    if path.endswith('.gz'):
      with gzip.open(path, 'rb') as f:
        return f.read()
    with open(path, 'rb') as f:
      return f.read()
  except (EOFError, OSError, zlib.error) as e:
    raise DataError(
        f'{path} cannot be read ({e}); the file is damaged or incomplete: replace it with a '
        'fresh copy of the original MNIST file'
    ) from e


def read_idx(path: str, magic: int, count: int) -> np.ndarray:
  """Reads an IDX file and checks its magic number, item count and length."""
  data = _read_bytes(path)
  ndim = magic & 0xFF
  header_size = 4 * (1 + ndim)
  if len(data) < header_size:
    raise DataError(f'{path} is too short to be an IDX file ({len(data)} bytes)')
  found_magic = int.from_bytes(data[:4], 'big')
  if found_magic != magic:
    raise DataError(
        f'{path} has magic number {found_magic}, expected {magic}: it is not the MNIST file '
        'its name says'
    )
  dims = [int.from_bytes(data[4 * (i + 1) : 4 * (i + 2)], 'big') for i in range(ndim)]
  if dims[0] != count:
    raise DataError(f'{path} holds {dims[0]} items, expected {count}')
  size = int(np.prod(dims))
  if len(data) - header_size != size:
    raise DataError(
        f'{path} has {len(data) - header_size} bytes of data, expected {size} for shape '
        f'{tuple(dims)}: the file is truncated or padded'
    )
  return np.frombuffer(data, np.uint8, offset=header_size).reshape(dims)


def _find(directory: str, name: str) -> str:
  for candidate in (name + '.gz', name):
    path = os.path.join(directory, candidate)
    if os.path.exists(path):
      return path
  raise DataError(
      f'MNIST file {name}.gz not found in {directory}: put the four original MNIST IDX files '
      'there (gzipped or not), or point data_dir / $FAJAX_DATA_DIR at the folder that holds '
      'mnist/'
  )


def load_split_from_idx(directory: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  images_name, labels_name, count = FILES[split]
  images = read_idx(_find(directory, images_name), IMAGES_MAGIC, count)
  labels = read_idx(_find(directory, labels_name), LABELS_MAGIC, count)
  if labels.max() >= NUM_CLASSES:
    raise DataError(f'{directory}/{labels_name} holds label {labels.max()}, beyond 0-9')
  return images[..., None], labels.astype(np.int32)


def load_split_from_tfds(split: str) -> tuple[np.ndarray, np.ndarray]:
  source = sources.tfds_source('mnist', split)
  records = [source[i] for i in range(len(source))]
  images = np.stack([image for image, _ in records]).astype(np.uint8)
  labels = np.array([label for _, label in records], np.int32)
  return images, labels


def load(data_dir: str) -> base.InMemoryDataset:
  """MNIST from `data_dir`/mnist when `data_dir` is set, else from TFDS."""
  if data_dir:
    directory = os.path.join(data_dir, 'mnist')
    if not os.path.isdir(directory):
      raise DataError(
          f'data directory {directory} does not exist: set $FAJAX_DATA_DIR or '
          '--config.data_dir to the folder that holds mnist/'
      )
    load_split = lambda split: load_split_from_idx(directory, split)
  else:
    load_split = load_split_from_tfds
  train_images, train_labels = load_split('train')
  test_images, test_labels = load_split('test')
  return base.InMemoryDataset(train_images, train_labels, test_images, test_labels, SPEC)


def preprocess(images: jax.Array) -> jax.Array:
  """uint8 [N, 28, 28, 1] → float32 [N, 32, 32, 1]: zero-padded to LeNet-5's input, normalized."""
  pad = (32 - IMAGE_SIDE) // 2
  images = jnp.pad(images.astype(jnp.float32) / 255.0, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return (images - PIXEL_MEAN) / PIXEL_STD


SPEC = base.Spec(NUM_CLASSES, (32, 32, 1), preprocess)
