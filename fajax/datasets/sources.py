"""Random-access sources of (image, label) records for grain pipelines."""

import numpy as np

from fajax.errors import DataError


class ArraySource:
  """Records from arrays held in memory."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images, self.labels = images, labels

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, index):
    return self.images[index], self.labels[index]


class TfdsSource:
  """Records of a TFDS ArrayRecord data source (no TensorFlow involved)."""

  def __init__(self, source):
    self.source = source

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    record = self.source[int(index)]
    return record['image'], record['label']


def tfds_source(name: str, split: str) -> TfdsSource:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return TfdsSource(tfds.data_source(name, split=split, download=False))
  except Exception as e:  # TFDS raises several kinds for a dataset that is not prepared.
    raise DataError(
        f'TFDS cannot open {name} ({type(e).__name__}: {e}); prepare it with '
        f"'tfds build {name} --file_format=array_record' (see the README for ImageNet's manual "
        "download) and point $TFDS_DATA_DIR at where it was built, if not ~/tensorflow_datasets"
    ) from e
