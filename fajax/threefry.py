"""Per-step random draws: JAX's own Threefry stream, lowered so that XLA fuses it on CPU.

JAX lowers its Threefry-2x32 hash on CPU as a loop over the five four-round blocks, which
writes every intermediate array to memory: 11.7 M draws cost ≈ 125 ms on the 2-core CPU, about
what the ResNet-18 step they feed costs. The same hash written as plain element-wise operations
fuses into one pass (≈ 18 ms). `normal` reproduces `jax.random.normal` bit for bit (a test
holds it to that), so BP + Noise, brSF and weight mirror draw the very numbers they drew before.

The stream is JAX's partitionable one (the default since JAX 0.5): element i of the result is
Threefry-2x32(key, (0, i)) with its two output words XOR-ed, i the row-major flat index.
Threefry is Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3" (SC'11).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_KEY_PARITY = np.uint32(0x1BD11BDA)
_FLOAT32_ONE_BITS = np.uint32(0x3F800000)
_FLOAT32_MANTISSA_BITS = 23


def _rotate_left(x: jax.Array, distance: int) -> jax.Array:
  return (x << np.uint32(distance)) | (x >> np.uint32(32 - distance))


def _threefry_2x32(key: jax.Array, x0: jax.Array, x1: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The 20-round Threefry-2x32 block cipher of the counters (x0, x1) under `key` (2 words)."""
  key_words = (key[0], key[1], key[0] ^ key[1] ^ _KEY_PARITY)
  x0 = x0 + key_words[0]
  x1 = x1 + key_words[1]
  for block in range(5):
    for distance in _ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = _rotate_left(x1, distance) ^ x0
    x0 = x0 + key_words[(block + 1) % 3]
    x1 = x1 + key_words[(block + 2) % 3] + np.uint32(block + 1)
  return x0, x1


def _flat_index(shape: tuple[int, ...]) -> jax.Array:
  # Built from one iota per axis, not a reshaped 1-D iota, so that a sharded result shards.
  index = jnp.zeros(shape, jnp.uint32)
  for axis in range(len(shape)):
    stride = np.uint32(math.prod(shape[axis + 1:]))
    index = index + lax.broadcasted_iota(jnp.uint32, shape, axis) * stride
  return index


def random_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """32 random bits per element: `jax.random.bits(key, shape, jnp.uint32)`, fused."""
  shape = tuple(shape)
  impl = str(jax.random.key_impl(key))
  if impl != 'threefry2x32':
    raise ValueError(f'fajax.threefry draws from threefry2x32 keys, not {impl}.')
  if math.prod(shape) >= 2**32:
    raise ValueError(f'cannot draw {math.prod(shape)} values at once: at most 2**32 - 1.')
  counter = _flat_index(shape)
  high, low = _threefry_2x32(jax.random.key_data(key), jnp.zeros_like(counter), counter)
  return high ^ low


def normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """Standard normal draws: `jax.random.normal(key, shape, dtype)`, fused.

  Where JAX would draw another stream (a key of another PRNG implementation, the
  non-partitionable Threefry mode) or dtype is not float32, `jax.random.normal` draws.
  """
  if (
      str(jax.random.key_impl(key)) != 'threefry2x32'
      or not jax.config.jax_threefry_partitionable
      or jnp.dtype(dtype) != jnp.float32
  ):
    return jax.random.normal(key, shape, dtype)
  mantissa = random_bits(key, shape) >> np.uint32(32 - _FLOAT32_MANTISSA_BITS)
  unit = lax.bitcast_convert_type(mantissa | _FLOAT32_ONE_BITS, jnp.float32) - np.float32(1)
  # Uniform on [lo, 1) with lo the float just above −1, so that erf⁻¹ stays finite.
  low = np.nextafter(np.float32(-1), np.float32(0))
  uniform = jnp.maximum(low, unit * (np.float32(1) - low) + low)
  return np.float32(np.sqrt(2)) * lax.erf_inv(uniform)
