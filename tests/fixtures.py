"""Small datasets written in the real on-disk formats."""

import pickle

import numpy as np

from fajax.datasets import cifar10


def write_cifar10(root, records_per_file=20, seed=0):
  """`root`/cifar10/cifar-10-batches-py with data_batch_1..5 and test_batch, as the real ones.

  Each image's red, green and blue planes are constant (label·20, 1, 2), so a test can check the
  channel-major layout.
  """
  directory = root / cifar10.BATCHES_DIR
  directory.mkdir(parents=True)
  rng = np.random.default_rng(seed)
  for name in (*cifar10.TRAIN_FILES, cifar10.TEST_FILE):
    labels = rng.integers(0, 10, records_per_file)
    planes = [np.repeat(labels[:, None] * 20, 1024, axis=1),
              np.full((records_per_file, 1024), 1), np.full((records_per_file, 1024), 2)]
    batch = {b'batch_label': name.encode(), b'labels': labels.tolist(),
             b'data': np.concatenate(planes, axis=1).astype(np.uint8),
             b'filenames': [b'x.png'] * records_per_file}
    with open(directory / name, 'wb') as f:
      pickle.dump(batch, f)
  return directory
