import gc
import os
import pathlib
import socket

import jax
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# The suite compiles hundreds of programs and runs each for a few steps, so LLVM's optimisation
# costs far more than it saves, and XLA's older loop emitters compile LeNet-5's steps in half
# the time of its MLIR fusion emitters; with both cores busy (two workers), splitting the code
# generation into parallel parts costs more than it saves (LeNet-5's steps 11%, ResNet-18's
# 7%). These hold for the session's own and its subprocesses' compiles (BUILD_NOTES, "Tests
# and CI time"). Set before JAX starts its backend.
os.environ['XLA_FLAGS'] = (f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
                           ' --xla_cpu_use_fusion_emitters=false'
                           ' --xla_cpu_parallel_codegen_split_count=1')

# A worker traces hundreds of programs and holds their objects (about 700k at the end):
# Python's default thresholds (700, 10, 10) ran 18 full collections over them and 5.2 s of
# collections in steps, kernel and models tests; these ran 4 full collections and 1.5 s
# (BUILD_NOTES.md, "Tests and CI time").
gc.set_threshold(10_000, 20, 20)


@pytest.fixture(scope='session', autouse=True)
def no_downloads():
  """Points $FAJAX_DATA_MIRROR at a port that refuses connections (bound, never listening), so
  a test that lacks its data fails at once instead of downloading; tests of the download
  override it with their own server."""
  with socket.socket() as closed_port, pytest.MonkeyPatch.context() as patch:
    closed_port.bind(('127.0.0.1', 0))
    patch.setenv('FAJAX_DATA_MIRROR', f'http://127.0.0.1:{closed_port.getsockname()[1]}')
    yield


@pytest.fixture(scope='session')
def mnist_data_dir() -> str:
  """The folder holding mnist/: $FAJAX_DATA_DIR, else ../shared/data beside the repo."""
  for candidate in (os.environ.get('FAJAX_DATA_DIR'), REPO.parent / 'shared' / 'data'):
    if candidate and (pathlib.Path(candidate) / 'mnist').is_dir():
      return os.path.abspath(candidate)
  pytest.skip('real MNIST not found: set FAJAX_DATA_DIR to the folder that holds mnist/')


@pytest.fixture(scope='session', autouse=True)
def compilation_cache(tmp_path_factory) -> str:
  """One persistent XLA compilation cache for the session's workers and the runs they start.

  Tests compile the same steps many times (a CLI run and its resume, each rule's test on
  LeNet-5, the same method in several files); with the cache each compiles once. Every program
  is cached, however fast it compiled: each test subprocess compiles the same few dozen small
  ones. The xdist workers share it: JAX's cache writes whole files, and a read that fails
  recompiles.
  """
  root = tmp_path_factory.getbasetemp()
  if os.environ.get('PYTEST_XDIST_WORKER'):
    root = root.parent  # the run's folder, above each worker's own
  directory = root / 'jax_compilation_cache'
  directory.mkdir(exist_ok=True)
  # The subprocesses read the same settings from the environment.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = str(directory)
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  jax.config.update('jax_compilation_cache_dir', str(directory))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  return str(directory)


def pytest_addoption(parser):
  parser.addoption('--runslow', action='store_true', help='also run tests marked slow')


# Files whose tests take longest, longest first (worker-seconds in a whole local run, session
# 16: columns 133, steps 91, models 79, sharding 67, ...). Under `--dist=loadfile` a worker
# takes the next file when it finishes one, in collection order (`--no-loadscope-reorder`):
# long files first leave short ones to even out the end, where xdist's own order (most tests
# first) left the columns, sharding and CLI files, few tests but minutes of work, to the end.
LONGEST_FILES = ('columns_test', 'steps_test', 'models_test', 'sharding_test', 'main_test',
                 'benchmarks_test', 'loop_test', 'reliability_test', 'convert_test', 'vit_test',
                 'preemption_test', 'outputs_test', 'experiment_test', 'package_test',
                 'diagnostics_test', 'versus_pytorch_test', 'kernel_test', 'trackers_test',
                 'export_test')


def _file_rank(item) -> int:
  name = item.path.stem
  return LONGEST_FILES.index(name) if name in LONGEST_FILES else len(LONGEST_FILES)


def pytest_collection_modifyitems(config, items):
  items.sort(key=_file_rank)  # stable: each file's tests keep their order
  if config.getoption('--runslow'):
    return
  skip = pytest.mark.skip(reason='slow: run with --runslow')
  for item in items:
    if 'slow' in item.keywords:
      item.add_marker(skip)
