"""The allocator setting keeps freed buffers in the process, ready for the next step."""

import pathlib
import subprocess
import sys

import pytest

# With the setting ('retain'), without it ('default'), or after a library training run
# ('train'): allocates, touches and frees 200 MB, then prints how much of it the process holds.
_SCRIPT = '''
import sys
import numpy as np
from fajax import host_memory
applied = host_memory.retain_freed_buffers() if sys.argv[1] == 'retain' else None
if sys.argv[1] == 'train':
  from flax import nnx
  import fajax
  from tests.fixtures import TinyMLP, tiny_config, tiny_data
  fajax.train(tiny_config('fa'), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
def rss_mb():
  with open('/proc/self/statm') as f:
    return int(f.read().split()[1]) * 4096 / 2**20
before = rss_mb()
buffer = np.ones(50 * 2**20, np.float32)
del buffer
print(applied, rss_mb() - before)
'''


def _held_mb(mode):
  result = subprocess.run([sys.executable, '-c', _SCRIPT, mode], capture_output=True, text=True,
                          check=True, cwd=pathlib.Path(__file__).resolve().parent.parent)
  applied, held = result.stdout.split()[-2:]  # after any lines a training run printed
  return applied, float(held)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; glibc only')
def test_freed_buffers_stay_in_the_process_only_with_the_setting():
  applied, held = _held_mb('retain')
  assert applied == 'True'
  assert held > 150  # the 200 MB stay mapped, ready for the next allocation
  _, held_by_default = _held_mb('default')
  assert held_by_default < 50  # glibc's default unmaps them at once


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; glibc only')
def test_the_library_leaves_the_allocator_alone():
  # Only the command lines (fajax.cli) change it: a notebook's process keeps glibc's defaults.
  _, held = _held_mb('train')
  assert held < 50
