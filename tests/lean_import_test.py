"""`fajax.lean_import`: a package imported while another cannot be."""

import sys
import types

import pytest

from fajax import lean_import


@pytest.fixture
def packages(tmp_path, monkeypatch):
  """`heavy`, whose import fails loudly, and `light`, which imports it if it can."""
  (tmp_path / 'heavy_for_test.py').write_text('raise RuntimeError("heavy was imported")')
  (tmp_path / 'light_for_test.py').write_text(
      'try:\n  import heavy_for_test as heavy\nexcept ImportError:\n  heavy = None\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  yield
  sys.modules.pop('light_for_test', None)


def test_the_unneeded_package_is_left_out_then_importable_again(packages):
  light = lean_import.import_without('light_for_test', 'heavy_for_test')
  assert light.heavy is None
  assert 'heavy_for_test' not in sys.modules
  with pytest.raises(RuntimeError, match='heavy was imported'):
    import heavy_for_test  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import


def test_an_unneeded_package_already_imported_is_used(packages, monkeypatch):
  heavy = types.ModuleType('heavy_for_test')
  monkeypatch.setitem(sys.modules, 'heavy_for_test', heavy)
  assert lean_import.import_without('light_for_test', 'heavy_for_test').heavy is heavy
  assert sys.modules['heavy_for_test'] is heavy
