"""MNIST from the original IDX files in `<data_dir>/mnist/`, downloaded there on first use."""

import gzip
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from fajax.datasets import base
from fajax.datasets import download
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
# Tried in order when a file is missing ($FAJAX_DATA_MIRROR replaces them).
MIRRORS = (
    'https://ossci-datasets.s3.amazonaws.com/mnist/',
    'https://storage.googleapis.com/cvdf-datasets/mnist/',
    'http://yann.lecun.com/exdb/mnist/',
)
# Of the gzipped originals, as every mirror serves them.
SHA256 = {
    'train-images-idx3-ubyte.gz':
        '440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609',
    'train-labels-idx1-ubyte.gz':
        '3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c',
    't10k-images-idx3-ubyte.gz':
        '8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6',
    't10k-labels-idx1-ubyte.gz':
        'f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6',
}


# Decompressed per read: gzip decompresses a whole request into new bytes before copying it.
_READ_BYTES = 1 << 20


def read_idx(path: str, magic: int, count: int) -> np.ndarray:
  """Reads an IDX file (gzipped if its name ends in .gz) and checks its magic number, item
  count and length.

  The data is decompressed straight into the array. Read into bytes first, the training images
  were held twice at once (94 MB), and the commands' allocator keeps what a run once held
  (`fajax.host_memory`): ≈ 40 MB more of the MNIST command's peak memory.
  """
  try:
    with (gzip.open(path, 'rb') if path.endswith('.gz') else open(path, 'rb')) as f:
      return _read_idx_stream(f, path, magic, count)
  except (EOFError, OSError, zlib.error) as e:
    raise DataError(
        f'{path} cannot be read ({e}); the file is damaged or incomplete: delete it, and '
        'fajax downloads it again'
    ) from e


def _read_idx_stream(f, path: str, magic: int, count: int) -> np.ndarray:
  ndim = magic & 0xFF
  header_size = 4 * (1 + ndim)
  header = f.read(header_size)
  if len(header) < header_size:
    raise DataError(f'{path} is too short to be an IDX file ({len(header)} bytes)')
  found_magic = int.from_bytes(header[:4], 'big')
  if found_magic != magic:
    raise DataError(
        f'{path} has magic number {found_magic}, expected {magic}: it is not the MNIST file '
        'its name says'
    )
  dims = [int.from_bytes(header[4 * (i + 1) : 4 * (i + 2)], 'big') for i in range(ndim)]
  if dims[0] != count:
    raise DataError(f'{path} holds {dims[0]} items, expected {count}')
  # Aligned, so that the device holds the same memory rather than a copy (`base.aligned_empty`);
  # read-only once filled, since it is shared.
  array = base.aligned_empty(tuple(dims), np.uint8)
  view, found = array.reshape(-1).data, 0  # one byte per element: uint8
  while found < array.size and (read := f.readinto(view[found:found + _READ_BYTES])):
    found += read
  found += len(f.read())  # bytes beyond the data: a padded file
  if found != array.size:
    raise DataError(
        f'{path} has {found} bytes of data, expected {array.size} for shape '
        f'{tuple(dims)}: the file is truncated or padded'
    )
  array.flags.writeable = False
  return array


def _find(data_dir: str, name: str) -> str:
  """The file `name` (gzipped or not) in `data_dir`/mnist, downloaded there if it is absent."""
  directory = os.path.join(data_dir, 'mnist')
  for candidate in (name + '.gz', name):
    path = os.path.join(directory, candidate)
    if os.path.exists(path):
      return path
  return download.fetch(data_dir, 'mnist', name + '.gz', SHA256[name + '.gz'], MIRRORS)


def load_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
  images_name, labels_name, count = FILES[split]
  images = read_idx(_find(data_dir, images_name), IMAGES_MAGIC, count)
  labels = read_idx(_find(data_dir, labels_name), LABELS_MAGIC, count)
  if labels.max() >= NUM_CLASSES:
    raise DataError(f'{data_dir}/mnist/{labels_name} holds label {labels.max()}, beyond 0-9')
  return images[..., None], labels.astype(np.int32)


def load(data_dir: str) -> base.InMemoryDataset:
  """MNIST from `data_dir`/mnist, whose missing files are downloaded first."""
  train_images, train_labels = load_split(data_dir, 'train')
  test_images, test_labels = load_split(data_dir, 'test')
  return base.InMemoryDataset(train_images, train_labels, test_images, test_labels, SPEC)


def preprocess(images: jax.Array) -> jax.Array:
  """uint8 [N, 28, 28, 1] → float32 [N, 32, 32, 1]: zero-padded to LeNet-5's input, normalized."""
  pad = (32 - IMAGE_SIDE) // 2
  images = jnp.pad(images.astype(jnp.float32) / 255.0, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return (images - PIXEL_MEAN) / PIXEL_STD


SPEC = base.Spec(NUM_CLASSES, (32, 32, 1), preprocess)
