"""How the host's C allocator treats XLA's buffers.

XLA on CPU allocates some of a step's buffers afresh on every call. glibc serves large requests
with `mmap` and hands them back with `munmap`, so every step faults those pages in again: on the
project's machine a fresh 47 MB buffer costs 10 ms to fill against 1 ms for a reused one, and
it made the single-step weight mirror and DenseFA on LeNet-5 1.5–1.8× slower than BP (1.0–1.06×
with this setting; BUILD_NOTES.md, "Speed").
"""

import ctypes
import ctypes.util

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
RETAINED_BYTES = 1 << 30


def retain_freed_buffers() -> bool:
  """Serves allocations under 1 GiB from the heap and keeps freed memory for reuse.

  Affects the whole process: the heap no longer shrinks by less than 1 GiB at a time, so the
  process keeps its peak host memory until it exits (which training does anyway). Returns
  whether it applied: only with glibc; other C libraries are left as they are.
  """
  name = ctypes.util.find_library('c')
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError, TypeError):
    return False
  return all(mallopt(param, ctypes.c_int(RETAINED_BYTES)) == 1
             for param in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))
