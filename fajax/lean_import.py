"""Imports that leave out a heavy package a dependency imports for nothing."""

import importlib
import sys
from types import ModuleType


def import_without(module: str, unneeded: str) -> ModuleType:
  """`module`, imported while `unneeded` cannot be imported, unless `unneeded` already is.

  `module` must treat an ImportError from `unneeded` as "not installed". Afterwards
  `unneeded` imports as before, for the caller and everyone else.
  """
  if unneeded in sys.modules:  # already paid for, or already refused
    return importlib.import_module(module)
  sys.modules[unneeded] = None  # type: ignore[assignment]  # its import raises ImportError
  try:
    return importlib.import_module(module)
  finally:
    del sys.modules[unneeded]
