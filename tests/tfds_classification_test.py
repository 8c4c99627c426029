"""`config.dataset = 'tfds:<name>'`: TFDS image-classification datasets by name, on TFDS's mock
data (random records of each dataset's real features)."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax import datasets
from fajax import experiment
from fajax.configs import common
from fajax.configs import mnist
from fajax.datasets import sources
from fajax.datasets import tfds_classification
from fajax.errors import ConfigError
from fajax.errors import DataError
from fajax.layers import default_kernel_init

tfds = pytest.importorskip('tensorflow_datasets')
TINY_RUN = dict(batch_size=8, eval_batch_size=8, num_train_steps=4, steps_per_call=1,
                log_every_steps=2, diagnostics=False, data_workers=1)


def _config(name, data_dir, base=None):
  config = base or common.get_config()
  config.dataset = f'tfds:{name}'
  config.data_dir = str(data_dir)  # the cached statistics of mock data stay in the test
  return config


def test_fashion_mnist_trains_lenet5_with_a_validation_split(tmp_path):
  config = _config('fashion_mnist', tmp_path, mnist.get_config('fa_usf_sn'))
  config.update(TINY_RUN, validation_examples=8)
  with tfds.testing.mock_data(num_examples=48):
    data = datasets.load(config)
    metrics = fajax.train(config)
  # 28×28 grey images, padded to LeNet-5's 32×32 as MNIST is.
  assert data.spec.input_shape == (32, 32, 1) and data.spec.num_classes == 10
  assert metrics['step'] == 4
  assert math.isfinite(metrics['eval/loss']) and math.isfinite(metrics['validation/loss'])


class _ConvNet(nnx.Module):
  """A caller's small model for 32×32×3 inputs."""

  def __init__(self, *, rngs):
    self.conv = fajax.FeedbackConv(3, 4, (3, 3), strides=4, kernel_init=default_kernel_init,
                                   rngs=rngs)
    self.out = fajax.FeedbackDense(8 * 8 * 4, 10, kernel_init=default_kernel_init, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.conv(x)).reshape(x.shape[0], -1))


def test_a_three_channel_dataset_trains_and_keeps_its_size(tmp_path):
  config = _config('svhn_cropped', tmp_path)
  config.update(TINY_RUN, method='fa', learning_rate=0.01)
  with tfds.testing.mock_data(num_examples=32):
    assert datasets.load(config).spec.input_shape == (32, 32, 3)
    metrics = fajax.train(config, model=_ConvNet(rngs=nnx.Rngs(params=0, feedback=1)))
  assert metrics['step'] == 4 and math.isfinite(metrics['eval/loss'])


def test_statistics_are_computed_once_then_read_from_the_data_folder(tmp_path, monkeypatch):
  reads = []
  read_record = sources.TfdsSource.__getitem__
  monkeypatch.setattr(sources.TfdsSource, '__getitem__',
                      lambda self, index: reads.append(index) or read_record(self, index))
  config = _config('svhn_cropped', tmp_path)
  with tfds.testing.mock_data(num_examples=20):
    first = datasets.load(config)
    assert len(reads) == 20  # every training image, fewer than STATISTICS_IMAGES
    reads.clear()
    second = datasets.load(config)
    assert reads == []
    raw = np.stack([first.train_source[i][0] for i in range(20)])
  pixels = raw / 255.0
  cached = json.loads((tmp_path / 'tfds_statistics' / 'svhn_cropped' / '3.1.0.json').read_text())
  np.testing.assert_allclose(cached['mean'], pixels.mean(axis=(0, 1, 2)), rtol=1e-9)
  np.testing.assert_allclose(cached['std'], pixels.std(axis=(0, 1, 2)), rtol=1e-9)
  # The second load normalizes with the cached statistics.
  np.testing.assert_allclose(second.spec.preprocess(jnp.asarray(raw)),
                             (pixels - cached['mean']) / cached['std'], rtol=1e-5, atol=1e-5)


def test_small_images_are_padded_with_background_before_normalizing():
  images = np.zeros((1, 28, 28, 1), np.uint8)
  images[0, 0, 0] = 255
  preprocess = jax.jit(lambda x: tfds_classification.preprocess(
      x, padding=((2, 2), (2, 2)), mean=(0.25,), std=(0.5,)))
  out = np.asarray(preprocess(images))
  assert out.shape == (1, 32, 32, 1)
  assert out[0, 0, 0, 0] == pytest.approx(-0.5)  # padding: pixel value 0
  assert out[0, 2, 2, 0] == pytest.approx(1.5)  # the image's corner, moved by the padding


@pytest.mark.parametrize('name, problem', [
    ('oxford_flowers102', r'tfds:oxford_flowers102 has images of varying size \(None, None, 3\)'),
    ('lfw', "tfds:lfw has no 'image' and class 'label' features"),
])
def test_datasets_that_are_not_fixed_size_image_classification_are_refused(name, problem,
                                                                           tmp_path):
  with tfds.testing.mock_data(num_examples=4):
    with pytest.raises(ConfigError, match=problem):
      datasets.load(_config(name, tmp_path))


def test_an_unprepared_dataset_says_how_to_prepare_it(tmp_path, monkeypatch):
  monkeypatch.setattr(tfds.core.constants, 'DATA_DIR', str(tmp_path))  # an empty TFDS folder
  with pytest.raises(DataError, match='tfds build fashion_mnist --file_format=array_record'):
    datasets.load(_config('fashion_mnist', tmp_path))


def test_a_tfds_name_passes_validation_and_an_empty_one_is_named(tmp_path):
  config = _config('fashion_mnist', tmp_path, mnist.get_config('bp'))
  experiment.validate_config(config)
  config.dataset = 'tfds:'
  with pytest.raises(ConfigError, match="dataset 'tfds:' names no TFDS dataset"):
    datasets.load(config)
  config.dataset = 'fashion_mnist'
  with pytest.raises(ConfigError, match=r'tfds:<name> \(any TFDS image-classification'):
    experiment.validate_config(config)
