"""The fused Threefry draws against JAX's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fajax import threefry

SHAPES = [(), (7,), (5, 5, 1, 6), (3, 3, 16, 32), (1000, 3)]


@pytest.mark.parametrize('shape', SHAPES)
def test_bits_are_jaxs_bits(shape):
  key = jax.random.key(11)
  np.testing.assert_array_equal(
      jax.jit(threefry.random_bits, static_argnums=1)(key, shape),
      jax.random.bits(key, shape, jnp.uint32))


@pytest.mark.parametrize('shape', SHAPES)
def test_normal_is_jaxs_normal(shape):
  key = jax.random.fold_in(jax.random.key(5), 2)
  np.testing.assert_array_equal(
      jax.jit(threefry.normal, static_argnums=1)(key, shape), jax.random.normal(key, shape))


def test_normal_draws_are_finite_with_unit_moments():
  draws = threefry.normal(jax.random.key(0), (200_000,))
  assert np.all(np.isfinite(draws))
  assert abs(float(jnp.mean(draws))) < 0.01 and abs(float(jnp.std(draws)) - 1) < 0.01


@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float16])
def test_other_dtypes_are_drawn_by_jax(dtype):
  key = jax.random.key(2)
  draws = threefry.normal(key, (4, 8), dtype)
  assert draws.dtype == dtype
  np.testing.assert_array_equal(draws, jax.random.normal(key, (4, 8), dtype))


def test_other_prng_implementations_are_drawn_by_jax():
  key = jax.random.key(2, impl='rbg')
  np.testing.assert_array_equal(threefry.normal(key, (4, 8)), jax.random.normal(key, (4, 8)))


def test_too_many_values_at_once_is_refused():
  with pytest.raises(ValueError, match='at most 2\\*\\*32'):
    jax.eval_shape(lambda key: threefry.random_bits(key, (2**16, 2**16)), jax.random.key(0))


def test_bits_of_other_prng_implementations_are_refused():
  with pytest.raises(ValueError, match='threefry2x32 keys, not rbg'):
    threefry.random_bits(jax.random.key(0, impl='rbg'), (4,))
