"""The allocator setting keeps freed buffers in the process, ready for the next step."""

import subprocess
import sys

import pytest

# Allocates, touches and frees 200 MB, then prints how much of it the process still holds.
_SCRIPT = '''
import sys
import numpy as np
from fajax import host_memory
applied = host_memory.retain_freed_buffers() if sys.argv[1] == 'retain' else None
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
                          check=True)
  applied, held = result.stdout.split()
  return applied, float(held)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc; glibc only')
def test_freed_buffers_stay_in_the_process_only_with_the_setting():
  applied, held = _held_mb('retain')
  assert applied == 'True'
  assert held > 150  # the 200 MB stay mapped, ready for the next allocation
  _, held_by_default = _held_mb('default')
  assert held_by_default < 50  # glibc's default unmaps them at once
