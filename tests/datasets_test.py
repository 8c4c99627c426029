"""CIFAR-10 and ImageNet input pipelines: readers, augmentation, batching and TFDS mock data."""

import numpy as np
import pytest

from fajax import datasets
from fajax.configs import cifar10_1, imagenet
from fajax.datasets import cifar10
from fajax.datasets import imagenet as imagenet_data
from fajax.errors import ConfigError
from fajax.errors import DataError

from tests.fixtures import write_cifar10


def _cifar_config(data_dir):
  config = cifar10_1.get_config('bp')
  config.data_dir = str(data_dir)
  return config


def test_cifar10_raw_reader_reads_the_real_layout(tmp_path):
  write_cifar10(tmp_path)
  data = datasets.load(_cifar_config(tmp_path))
  assert data.num_train == 100 and len(data.test_source) == 20
  image, label = data.train_source[3]
  assert image.shape == (32, 32, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image[..., 0], label * 20)  # red plane first in each row
  np.testing.assert_array_equal(image[..., 1], 1)
  np.testing.assert_array_equal(image[..., 2], 2)


def test_cifar10_corrupt_batch_is_named(tmp_path):
  directory = write_cifar10(tmp_path)
  path = directory / 'data_batch_3'
  path.write_bytes(path.read_bytes()[:1000])
  with pytest.raises(DataError, match='data_batch_3 is not a valid CIFAR-10 batch'):
    datasets.load(_cifar_config(tmp_path))


def test_cifar10_missing_file_and_directory(tmp_path):
  # The tests' $FAJAX_DATA_MIRROR refuses connections (conftest.py).
  with pytest.raises(DataError, match=r'cannot download cifar-10-python.tar.gz: .*Put the file '
                                      r'into .*/cifar10/ by hand'):
    datasets.load(_cifar_config(tmp_path))
  directory = write_cifar10(tmp_path)
  (directory / 'test_batch').unlink()
  with pytest.raises(DataError, match='test_batch not found'):
    datasets.load(_cifar_config(tmp_path))


def _batches(data, seed, start=0, steps=3):
  return [tuple(np.asarray(x) for x in batch)
          for batch in data.train_batches(8, seed, start_step=start, num_steps=steps)]


def test_training_batches_are_deterministic_per_seed_and_resume_exactly(tmp_path):
  write_cifar10(tmp_path)
  data = datasets.load(_cifar_config(tmp_path))
  first, again, other = _batches(data, 0), _batches(data, 0), _batches(data, 1)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(first[0][0], other[0][0])
  resumed = _batches(data, 0, start=2, steps=1)
  np.testing.assert_array_equal(resumed[0][0], first[2][0])
  # Two shards split every batch between them.
  halves = [list(data.train_batches(8, 0, 0, 1, shard_index=i, shard_count=2))[0]
            for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([h[1] for h in halves]), first[0][1])


def test_cifar10_augmentation_crops_flips_and_depends_on_the_seed():
  image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
  crops = [cifar10.augment(image, np.random.default_rng(s)) for s in range(20)]
  assert all(c.shape == (32, 32, 3) for c in crops)
  np.testing.assert_array_equal(cifar10.augment(image, np.random.default_rng(5)), crops[5])
  assert len({c.tobytes() for c in crops}) > 10


def test_imagenet_crops_are_deterministic_and_the_right_size():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
  a = imagenet_data.random_resized_crop(image, 224, np.random.default_rng(1))
  b = imagenet_data.random_resized_crop(image, 224, np.random.default_rng(1))
  c = imagenet_data.random_resized_crop(image, 224, np.random.default_rng(2))
  assert a.shape == (224, 224, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  center = imagenet_data.center_crop(image, 224)
  assert center.shape == (224, 224, 3)


def test_eval_batches_cover_the_split_once_with_a_mask(tmp_path):
  write_cifar10(tmp_path)
  data = datasets.load(_cifar_config(tmp_path))
  batches = list(data.eval_batches(16))
  assert [b[2].sum() for b in batches] == [16, 4]
  labels = np.concatenate([b[1][b[2] > 0] for b in batches])
  np.testing.assert_array_equal(labels, [data.test_source[i][1] for i in range(20)])


@pytest.mark.parametrize('kind', ['grain', 'in memory'])
def test_two_processes_read_disjoint_halves_of_each_eval_batch(tmp_path, kind):
  write_cifar10(tmp_path)
  data = datasets.load(_cifar_config(tmp_path))
  if kind == 'in memory':
    data = datasets.InMemoryDataset.random(data.spec, (32, 32, 3), 8, 20)
  whole = list(data.eval_batches(16))
  halves = [list(data.eval_batches(16, shard_index=i, shard_count=2)) for i in range(2)]
  assert len(halves[0]) == len(halves[1]) == len(whole) == 2
  for b, (first, second) in enumerate(zip(*halves)):
    for part in range(3):  # images, labels, mask: the two halves make up the batch
      np.testing.assert_array_equal(
          np.concatenate([first[part], second[part]]), np.asarray(whole[b][part]))
  assert [h[1][2].sum() for h in halves] == [4, 0]  # the padding falls to the second half


@pytest.mark.parametrize('name', ['tfds:cifar10', 'imagenet2012'])
def test_tfds_sources_through_mock_data(name, tmp_path):
  tfds = pytest.importorskip('tensorflow_datasets')
  config = imagenet.get_config('imagenet2', 'bp') if name == 'imagenet2012' else _cifar_config(
      tmp_path)
  config.dataset = name
  config.image_size = 64
  with tfds.testing.mock_data(num_examples=24):
    data = datasets.load(config)
    images, labels = next(iter(data.train_batches(8, 0, 0, 1)))
  side = 64 if name == 'imagenet2012' else 32
  assert images.shape == (8, side, side, 3) and images.dtype == np.uint8
  assert labels.dtype == np.int32


def test_reading_tfds_data_never_imports_tensorflow(monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  import sys  # pylint: disable=g-import-not-at-top

  monkeypatch.delenv('FAJAX_DATA_DIR', raising=False)
  config = imagenet.get_config('imagenet1', 'bp')
  config.image_size = 64
  with tfds.testing.mock_data(num_examples=8):
    data = datasets.load(config)
    next(iter(data.train_batches(4, 0, 0, 1)))
    next(iter(data.eval_batches(4)))
  assert 'tensorflow' not in sys.modules


def test_epoch_batches_deterministic_per_seed_and_epoch():
  a = datasets.epoch_batches(1000, 32, seed=0, epoch=3)
  np.testing.assert_array_equal(a, datasets.epoch_batches(1000, 32, seed=0, epoch=3))
  assert not np.array_equal(a, datasets.epoch_batches(1000, 32, seed=1, epoch=3))
  assert not np.array_equal(a, datasets.epoch_batches(1000, 32, seed=0, epoch=4))
  assert a.shape == (31, 32)
  assert len(np.unique(a)) == a.size


def _numbered(num_train, num_test):
  """In-memory data whose image i is filled with the number i, and label i % 10."""
  images = lambda n, base: np.broadcast_to(
      (base + np.arange(n, dtype=np.uint8))[:, None, None, None], (n, 2, 2, 1)).copy()
  labels = lambda n: (np.arange(n) % 10).astype(np.int32)
  spec = datasets.Spec(10, (2, 2, 1))
  return datasets.InMemoryDataset(images(num_train, 0), labels(num_train),
                                  images(num_test, 200), labels(num_test), spec)


def test_held_out_validation_split_is_disjoint_from_training():
  held = _numbered(50, 10).hold_out(12)
  assert held.num_train == 38
  trained_on = {int(x) for epoch in range(3)
                for images, _ in held.train_batches(4, 0, epoch * 9, 9)
                for x in np.asarray(images)[:, 0, 0, 0]}
  validated_on = {int(x) for images, _, mask in held.eval_batches(5, split=datasets.VALIDATION)
                  for x, real in zip(np.asarray(images)[:, 0, 0, 0], mask) if real}
  tested_on = {int(x) for images, _, mask in held.eval_batches(5)
               for x, real in zip(np.asarray(images)[:, 0, 0, 0], mask) if real}
  assert trained_on <= set(range(38)) and len(trained_on) > 30
  assert validated_on == set(range(38, 50))
  assert tested_on == set(range(200, 210))
  with pytest.raises(ConfigError, match='validation_examples=50 must be between 0 and the 50'):
    _numbered(50, 10).hold_out(50)


def test_streamed_validation_split_is_the_last_training_records(tmp_path):
  write_cifar10(tmp_path)
  data = datasets.load(_cifar_config(tmp_path))
  held = data.hold_out(30)
  assert held.num_train == 70 and len(held.validation_source) == 30
  validation_labels = np.concatenate([labels[mask > 0] for _, labels, mask in
                                      held.eval_batches(8, split=datasets.VALIDATION)])
  np.testing.assert_array_equal(validation_labels,
                                [data.train_source[i][1] for i in range(70, 100)])
  trained_labels = np.concatenate([labels for _, labels in held.train_batches(10, 0, 0, 7)])
  assert sorted(trained_labels) == sorted(data.train_source[i][1] for i in range(70))


def test_replica_batches_follow_each_replicas_seed():
  data = _numbered(40, 4)
  stacked = list(datasets.replica_batches(data, [3, 5, 3], 4, start_step=2, num_steps=3))
  assert stacked[0][0].shape == (3, 4, 2, 2, 1)
  for seed, replica in ((3, 0), (5, 1), (3, 2)):
    alone = list(data.train_batches(4, seed, 2, 3))
    for (images, labels), (own_images, own_labels) in zip(stacked, alone):
      np.testing.assert_array_equal(images[replica], own_images)
      np.testing.assert_array_equal(labels[replica], own_labels)


@pytest.mark.parametrize('shape,dtype', [((7,), np.uint8), ((3, 5, 2), np.int32), ((60, 28, 28), np.float32)])
def test_an_aligned_array_starts_on_the_boundary_the_cpu_client_takes_in_place(shape, dtype):
  for _ in range(5):  # NumPy's own arrays start on various smaller boundaries
    array = datasets.base.aligned_empty(shape, dtype)
    assert array.shape == shape and array.dtype == dtype and array.flags.c_contiguous
    assert array.ctypes.data % datasets.base.HOST_ALIGNMENT == 0
