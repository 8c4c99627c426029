"""Any TFDS image-classification dataset by name: `config.dataset = 'tfds:<name>'`.

    config.dataset = 'tfds:fashion_mnist'  # or tfds:svhn_cropped, tfds:emnist/letters, ...

The dataset must be prepared in ArrayRecord format (`tfds build <name>
--file_format=array_record`); it is read through `tfds.data_source`, without TensorFlow. Its
info gives the image shape (one fixed size, uint8) and the number of classes of its 'label'
feature; it is evaluated on its 'test' split, or on 'validation' when it publishes no test split.

- Images narrower or shorter than 32 pixels are zero-padded, centred, to 32: the smallest input
  of the built-in models. LeNet-5 thus takes 28×28 datasets (Fashion-MNIST, KMNIST, EMNIST) as
  it takes MNIST, whose padding is the same (pixel value 0, before normalization).
- Each channel is normalized by the mean and standard deviation of training pixels, computed on
  first use from up to `STATISTICS_IMAGES` evenly spaced training images (enough for three
  decimals, and a bounded cost on large datasets) and cached in the data folder, e.g.
  `<data_dir>/tfds_statistics/fashion_mnist/3.0.1.json`.
- Training has no augmentation: a flip or shift is wrong for some datasets (digits, text), so
  none is assumed. The built-in `cifar10` keeps its crop and flip.
"""

import contextlib
import functools
import json
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from fajax.datasets import base
from fajax.datasets import sources
from fajax.datasets import streamed
from fajax.errors import ConfigError
from fajax.errors import DataError

PREFIX = 'tfds:'
MIN_SIDE = 32
STATISTICS_IMAGES = 10_000
STATISTICS_FOLDER = 'tfds_statistics'


def _checked_features(name: str, info) -> tuple[tuple[int, int, int], int]:
  """(image shape, number of classes) of an image-classification dataset; ConfigError for any
  other kind."""
  features = info.features
  if not ('image' in features and 'label' in features
          and hasattr(features['label'], 'num_classes')):
    raise ConfigError(
        f"tfds:{name} has no 'image' and class 'label' features (it has "
        f"{', '.join(features.keys())}); fajax reads image-classification datasets by name")
  image = features['image']
  shape = tuple(image.shape)
  if None in shape:
    raise ConfigError(
        f'tfds:{name} has images of varying size {shape}; name a dataset of fixed-size images '
        '(e.g. tfds:svhn_cropped), or resize them yourself and pass data= to fajax.train')
  if np.dtype(image.np_dtype) != np.uint8:
    raise ConfigError(f'tfds:{name} has {np.dtype(image.np_dtype)} images; fajax reads uint8 '
                      'images by name (pass data= to fajax.train for others)')
  return shape, features['label'].num_classes


def _evaluation_split(info) -> str:
  return 'validation' if 'validation' in info.splits and 'test' not in info.splits else 'test'


def channel_statistics(source, channels: int) -> tuple[list[float], list[float]]:
  """Per-channel mean and standard deviation of pixels scaled to [0, 1], over up to
  `STATISTICS_IMAGES` evenly spaced records of `source`."""
  count = min(len(source), STATISTICS_IMAGES)
  total, squares, pixels = np.zeros(channels), np.zeros(channels), 0
  for index in np.linspace(0, len(source) - 1, count).round().astype(int):
    image, _ = source[int(index)]
    values = np.asarray(image, np.float64).reshape(-1, channels) / 255.0
    total += values.sum(axis=0)
    squares += np.square(values).sum(axis=0)
    pixels += len(values)
  mean = total / pixels
  std = np.sqrt(np.maximum(squares / pixels - np.square(mean), 0.0))
  return mean.tolist(), std.tolist()


def cached_statistics(source, info, channels: int, data_dir: str):
  """`channel_statistics` of the training `source`, read from the data folder's cache, or
  computed and written there."""
  path = os.path.join(data_dir, STATISTICS_FOLDER, *info.full_name.split('/')) + '.json'
  cached = _read_statistics(path, channels)
  if cached:
    return cached
  mean, std = channel_statistics(source, channels)
  record = {'dataset': info.full_name, 'split': 'train',
            'images': min(len(source), STATISTICS_IMAGES), 'mean': mean, 'std': std}
  try:
    _write_json(path, record)
  except OSError as e:
    logging.warning('cannot cache the normalization statistics of %s in %s (%s); they are '
                    'computed again on the next run', info.full_name, path, e)
  return mean, std


def _read_statistics(path: str, channels: int) -> tuple[list, list] | None:
  try:
    with open(path) as f:
      cached = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:
    raise DataError(f'{path} is damaged ({e}); delete it, and fajax computes it again') from e
  mean, std = cached.get('mean', ()), cached.get('std', ())
  if not len(mean) == len(std) == channels:
    raise DataError(f'{path} does not hold {channels} means and standard deviations; delete '
                    'it, and fajax computes it again')
  return mean, std


def _write_json(path: str, record: dict) -> None:
  """Writes `record` to a temporary file renamed to `path`: readers see all of it or none."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  partial = tempfile.NamedTemporaryFile('w', dir=os.path.dirname(path), suffix='.part',
                                        delete=False)
  try:
    with partial:
      json.dump(record, partial, indent=1)
    os.replace(partial.name, path)
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(partial.name)


def _pad_to(side: int) -> tuple[int, int]:
  missing = max(MIN_SIDE - side, 0)
  return missing // 2, missing - missing // 2


def preprocess(images: jax.Array, *, padding, mean, std) -> jax.Array:
  """uint8 [N, H, W, C] → float32, zero-padded by `padding` (the rows and columns before and
  after), each channel normalized."""
  images = jnp.pad(images.astype(jnp.float32) / 255.0, ((0, 0), *padding, (0, 0)))
  return (images - jnp.asarray(mean)) / jnp.asarray(std)


def _unchanged(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  del rng
  return image


def _as_read(image: np.ndarray) -> np.ndarray:
  return image


def load(config) -> streamed.GrainDataset:
  """The dataset `config.dataset = 'tfds:<name>'` names."""
  name = config.dataset.removeprefix(PREFIX)
  if not name:
    raise ConfigError(f"dataset '{config.dataset}' names no TFDS dataset; write tfds:<name>, "
                      'e.g. tfds:fashion_mnist')
  train = sources.tfds_source(name, 'train')
  info = train.source.dataset_info
  (height, width, channels), num_classes = _checked_features(name, info)
  test = sources.tfds_source(name, _evaluation_split(info))
  mean, std = cached_statistics(train, info, channels, base.data_dir(config))
  padding = (_pad_to(height), _pad_to(width))
  input_shape = (height + sum(padding[0]), width + sum(padding[1]), channels)
  spec = base.Spec(num_classes, input_shape, functools.partial(
      preprocess, padding=padding, mean=tuple(mean), std=tuple(std)))
  return streamed.GrainDataset(train, test, spec, _unchanged, _as_read,
                           num_threads=config.data_workers)
