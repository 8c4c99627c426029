"""What the command lines share: where their compilation cache lives."""

from fajax import cli


def test_the_compilation_cache_folder_comes_from_the_flag_then_jax_then_the_user_cache(
    monkeypatch):
  monkeypatch.setenv('JAX_COMPILATION_CACHE_DIR', '/jax/cache')
  monkeypatch.setenv('XDG_CACHE_HOME', '/home/me/.cache')
  assert cli.compilation_cache_dir('/flag/cache') == '/flag/cache'
  assert cli.compilation_cache_dir('') == ''  # off
  assert cli.compilation_cache_dir(None) == '/jax/cache'
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR')
  assert cli.compilation_cache_dir(None) == '/home/me/.cache/fajax/xla'
  monkeypatch.delenv('XDG_CACHE_HOME')
  monkeypatch.setenv('HOME', '/home/me')
  assert cli.compilation_cache_dir(None) == '/home/me/.cache/fajax/xla'
