import os
import pathlib

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope='session')
def mnist_data_dir() -> str:
  """The folder holding mnist/: $FAJAX_DATA_DIR, else ../shared/data beside the repo."""
  for candidate in (os.environ.get('FAJAX_DATA_DIR'), REPO.parent / 'shared' / 'data'):
    if candidate and (pathlib.Path(candidate) / 'mnist').is_dir():
      return os.path.abspath(candidate)
  pytest.skip('real MNIST not found: set FAJAX_DATA_DIR to the folder that holds mnist/')


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory) -> str:
  """One persistent XLA compilation cache for the session and the runs its tests start.

  Tests compile the same steps many times (a CLI run and its resume, each rule's test on
  LeNet-5); with the cache each compiles once.
  """
  directory = str(tmp_path_factory.mktemp('jax_compilation_cache'))
  os.environ['JAX_COMPILATION_CACHE_DIR'] = directory  # for the subprocesses
  jax.config.update('jax_compilation_cache_dir', directory)
  return directory


def pytest_addoption(parser):
  parser.addoption('--runslow', action='store_true', help='also run tests marked slow')


def pytest_collection_modifyitems(config, items):
  if config.getoption('--runslow'):
    return
  skip = pytest.mark.skip(reason='slow: run with --runslow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)
