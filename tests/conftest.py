import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='session')
def mnist_data_dir() -> str:
  """The folder holding mnist/: $FAJAX_DATA_DIR, else ../shared/data beside the repo."""
  for candidate in (os.environ.get('FAJAX_DATA_DIR'), REPO.parent / 'shared' / 'data'):
    if candidate and (pathlib.Path(candidate) / 'mnist').is_dir():
      return str(candidate)
  pytest.skip('real MNIST not found: set FAJAX_DATA_DIR to the folder that holds mnist/')
