"""Config validation over random values (hypothesis): every value either validates, and then
lies in its documented range, or is a ConfigError naming its field; never another exception."""

import math

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from fajax import replicas as replicas_lib
from fajax.configs import mnist
from fajax.errors import ConfigError
from fajax.experiment import validate_config

# field → what a valid value satisfies
FLOAT_RANGES = {
    'learning_rate': lambda v: math.isfinite(v) and v > 0,
    'weight_decay': lambda v: math.isfinite(v) and v >= 0,
    'momentum': lambda v: 0 <= v < 1,
    'feedback_noise_std': lambda v: math.isfinite(v) and v >= 0,
    'direct_feedback_memory_budget_mb': lambda v: math.isfinite(v) and v > 0,
}
INT_RANGES = {
    'batch_size': lambda v: v > 0, 'eval_batch_size': lambda v: v > 0,
    'log_every_steps': lambda v: v > 0, 'steps_per_call': lambda v: v > 0,
    'replicas': lambda v: v > 0, 'validation_examples': lambda v: v >= 0,
    'warmup_steps': lambda v: v >= 0, 'train_examples_limit': lambda v: v >= 0,
    'eval_examples_limit': lambda v: v >= 0, 'checkpoint_every_steps': lambda v: v > 0,
}
ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=32)
ANY_INT = st.integers(-10**6, 10**6)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(field=st.sampled_from(sorted(FLOAT_RANGES) + sorted(INT_RANGES)), data=st.data())
def test_a_value_validates_only_inside_its_range(field, data):
  config = mnist.get_config('fa')
  value = data.draw(ANY_FLOAT if field in FLOAT_RANGES else ANY_INT)
  config[field] = value
  valid = {**FLOAT_RANGES, **INT_RANGES}[field](value)
  try:
    validate_config(config)
    replicas_lib.plan(config)
  except ConfigError as e:
    assert not valid, f'{field}={value} refused: {e}'
    assert field in str(e)
  else:
    assert valid, f'{field}={value} accepted'


@settings(max_examples=100, deadline=None, derandomize=True)
@given(name=st.sampled_from(['learning_rate', 'weight_decay']),
       values=st.lists(ANY_FLOAT, min_size=1, max_size=3))
def test_swept_values_obey_the_fields_range(name, values):
  config = mnist.get_config('fa')
  config.sweep[name] = tuple(values)
  valid = all(FLOAT_RANGES[name](v) for v in values)
  try:
    validate_config(config)
  except ConfigError as e:
    assert not valid and name in str(e)
  else:
    assert valid
