"""ImageNet (ILSVRC 2012) from the prepared TFDS `imagenet2012` dataset.

TFDS needs the manual download (README: "Preparing ImageNet"); training reads its ArrayRecord
files through `tfds.data_source`, without TensorFlow.
"""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from fajax.datasets import base
from fajax.datasets import sources
from fajax.datasets import streamed

NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# Eval resizes the shorter side to size·256/224, then takes the central size×size crop.
RESIZE_RATIO = 256 / 224
CROP_SCALE = (0.08, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """A crop of random area (8–100%) and aspect ratio (3/4–4/3), resized to size×size.

  Inception-style, as torchvision's RandomResizedCrop: 10 tries, then the central crop.
  """
  height, width = image.shape[:2]
  area = height * width
  for _ in range(10):
    target_area = area * rng.uniform(*CROP_SCALE)
    ratio = np.exp(rng.uniform(np.log(CROP_RATIO[0]), np.log(CROP_RATIO[1])))
    w = int(round(np.sqrt(target_area * ratio)))
    h = int(round(np.sqrt(target_area / ratio)))
    if 0 < w <= width and 0 < h <= height:
      top = rng.integers(0, height - h + 1)
      left = rng.integers(0, width - w + 1)
      return _resize(image[top : top + h, left : left + w], size, size)
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  return _resize(image[top : top + side, left : left + side], size, size)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
  height, width = image.shape[:2]
  short = round(size * RESIZE_RATIO)
  scale = short / min(height, width)
  height, width = max(size, round(height * scale)), max(size, round(width * scale))
  image = _resize(image, height, width)
  top, left = (height - size) // 2, (width - size) // 2
  return image[top : top + size, left : left + size]


def _rgb(image: np.ndarray) -> np.ndarray:
  return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def preprocess(images: jax.Array) -> jax.Array:
  images = images.astype(jnp.float32) / 255.0
  return (images - jnp.asarray(MEAN)) / jnp.asarray(STD)


def load(config) -> streamed.GrainDataset:
  size = config.image_size

  def augment(image, rng):
    crop = random_resized_crop(_rgb(image), size, rng)
    return crop[:, ::-1] if rng.random() < 0.5 else crop

  return streamed.GrainDataset(
      sources.tfds_source('imagenet2012', 'train'),
      sources.tfds_source('imagenet2012', 'validation'),
      base.Spec(NUM_CLASSES, (size, size, 3), preprocess),
      augment,
      lambda image: center_crop(_rgb(image), size),
      num_threads=config.data_workers,
  )
