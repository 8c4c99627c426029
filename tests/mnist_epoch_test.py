"""One full MNIST epoch per method: the issue's acceptance runs (slow; run with --runslow)."""

import pytest

import fajax
from fajax.configs import mnist

# Upper bounds on the one-epoch test error (%): BP and uSF under 3%, FA well below chance.
ONE_EPOCH_ERROR_BOUND = {'bp': 3.0, 'fa_usf_sn': 3.0, 'fa_usf_init': 5.0, 'fa': 30.0}


@pytest.mark.slow
@pytest.mark.parametrize('method', sorted(ONE_EPOCH_ERROR_BOUND))
def test_one_epoch_of_mnist(method, mnist_data_dir):
  config = mnist.get_config(method)
  config.data_dir = mnist_data_dir
  config.num_epochs = 1
  metrics = fajax.train(config)
  assert metrics['eval/top1_error'] < ONE_EPOCH_ERROR_BOUND[method]
