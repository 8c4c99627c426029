"""Statistics over replicas."""

import pytest

from fajax import replicas


def test_mean_and_std_gives_the_sample_std_over_seeds():
  mean, std = replicas.mean_and_std([1.0, 2.0, 3.0, 4.0])
  assert mean == pytest.approx(2.5)
  assert std == pytest.approx((5 / 3) ** 0.5)  # ddof 1: squared deviations 5 over n − 1 = 3
  assert replicas.mean_and_std([1.7]) == (1.7, 0.0)
