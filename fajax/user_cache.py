"""fajax's folder in the user's cache: $XDG_CACHE_HOME/fajax, else ~/.cache/fajax (the XDG base
directory convention), for what is worth keeping between runs but can be made again: downloaded
datasets and compiled programs."""

import os


def folder(*parts: str) -> str:
  cache_home = os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache')
  return os.path.join(cache_home, 'fajax', *parts)
