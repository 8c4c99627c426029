"""MNIST readers: the real IDX files and generated broken ones."""

import gzip
import os
import tracemalloc

import jax
import numpy as np
import pytest

from fajax.datasets import mnist
from fajax.errors import DataError

from tests.fixtures import idx_bytes


def _write_mnist(root, num_train=60000, num_test=10000, images_magic=2051, gz=True):
  directory = root / 'mnist'
  directory.mkdir()
  rng = np.random.default_rng(0)
  for split, n in (('train', num_train), ('test', num_test)):
    images_name, labels_name, _ = mnist.FILES[split]
    files = {
        images_name: idx_bytes(images_magic, rng.integers(0, 256, (n, 28, 28))),
        labels_name: idx_bytes(2049, rng.integers(0, 10, n)),
    }
    for name, data in files.items():
      if gz:
        with gzip.open(directory / (name + '.gz'), 'wb') as f:
          f.write(data)
      else:
        (directory / name).write_bytes(data)
  return directory


def test_real_mnist_loads_with_known_shapes_and_labels(mnist_data_dir):
  data = mnist.load(mnist_data_dir)
  assert data.train_images.shape == (60000, 28, 28, 1)
  assert data.test_images.shape == (10000, 28, 28, 1)
  assert data.train_images.dtype == np.uint8
  # Published class counts of the MNIST training set.
  assert np.bincount(data.train_labels).tolist() == [
      5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
  assert np.bincount(data.test_labels)[0] == 980


def test_the_images_are_decompressed_into_their_array_without_a_copy(mnist_data_dir):
  # A run's allocator keeps what it ever held (fajax.host_memory): the whole file read into
  # bytes first, beside the array, cost ≈ 90 MB of every MNIST command's peak memory.
  path = os.path.join(mnist_data_dir, 'mnist', 'train-images-idx3-ubyte.gz')
  tracemalloc.start()
  try:
    images = mnist.read_idx(path, mnist.IMAGES_MAGIC, 60000)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert images.shape == (60000, 28, 28) and peak < 1.1 * images.nbytes


def test_the_device_holds_the_loaded_images_in_their_own_memory(tmp_path):
  # A copy on the device would be a second 47 MB of training images in every MNIST run.
  _write_mnist(tmp_path)
  data = mnist.load(str(tmp_path))
  for images in (data.train_images, data.test_images):
    assert not images.flags.writeable  # shared with the device: never changed
    assert jax.device_put(images).unsafe_buffer_pointer() == images.ctypes.data


def test_uncompressed_files_load_too(tmp_path):
  _write_mnist(tmp_path, gz=False)
  data = mnist.load(str(tmp_path))
  assert data.train_images.shape == (60000, 28, 28, 1)
  assert data.test_labels.dtype == np.int32


def test_missing_files_that_cannot_be_downloaded_name_the_folder_to_fill(tmp_path):
  # The tests' $FAJAX_DATA_MIRROR refuses connections (conftest.py).
  with pytest.raises(DataError, match=r'cannot download train-images-idx3-ubyte.gz: http://'
                                      r'127\.0\.0\.1.*Put the file into .*nowhere/mnist/ by hand'):
    mnist.load(str(tmp_path / 'nowhere'))


def test_missing_file_is_named(tmp_path):
  directory = _write_mnist(tmp_path)
  os.remove(directory / 't10k-labels-idx1-ubyte.gz')
  with pytest.raises(DataError, match='cannot download t10k-labels-idx1-ubyte.gz'):
    mnist.load(str(tmp_path))


def test_wrong_magic_number(tmp_path):
  _write_mnist(tmp_path, images_magic=2049 + 0x100)
  with pytest.raises(DataError, match='magic number'):
    mnist.load(str(tmp_path))


def test_wrong_count(tmp_path):
  _write_mnist(tmp_path, num_train=100)
  with pytest.raises(DataError, match='holds 100 items, expected 60000'):
    mnist.load(str(tmp_path))


def test_truncated_gzip(tmp_path):
  directory = _write_mnist(tmp_path)
  path = directory / 'train-images-idx3-ubyte.gz'
  path.write_bytes(path.read_bytes()[:5000])
  with pytest.raises(DataError, match='train-images-idx3-ubyte.gz cannot be read'):
    mnist.load(str(tmp_path))


def test_truncated_data_after_a_valid_header(tmp_path):
  directory = _write_mnist(tmp_path, gz=False)
  path = directory / 't10k-images-idx3-ubyte'
  path.write_bytes(path.read_bytes()[:-10])
  with pytest.raises(DataError, match='truncated'):
    mnist.load(str(tmp_path))


def test_preprocess_pads_to_32_and_normalizes():
  images = np.zeros((2, 28, 28, 1), np.uint8)
  images[:, 5, 5] = 255
  out = np.asarray(mnist.preprocess(images))
  assert out.shape == (2, 32, 32, 1)
  background = -mnist.PIXEL_MEAN / mnist.PIXEL_STD
  np.testing.assert_allclose(out[0, 0, 0, 0], background, rtol=1e-6)
  np.testing.assert_allclose(out[0, 7, 7, 0], (1 - mnist.PIXEL_MEAN) / mnist.PIXEL_STD, rtol=1e-6)
