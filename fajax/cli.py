"""What every fajax command line shares: quiet library logs, one-line user errors, and a
persistent compilation cache."""

import difflib
import gc
import os
import sys
from collections.abc import Callable

import jax
from absl import app
from absl import flags
from absl import logging

from fajax import experiments
from fajax import host_memory
from fajax import preemption
from fajax import user_cache
from fajax.errors import FajaxError

_COMPILATION_CACHE_DIR = flags.DEFINE_string(
    'compilation_cache_dir', None,
    'Folder of the persistent XLA compilation cache: a second run of the same programs starts '
    'without compiling them. Default: $JAX_COMPILATION_CACHE_DIR, else '
    '$XDG_CACHE_HOME/fajax/xla (~/.cache/fajax/xla); "" turns it off.')


def compilation_cache_dir(flag_value: str | None) -> str:
  """The cache folder the flag, the environment or the user cache folder name; '' for none."""
  if flag_value is not None:
    return flag_value
  if os.environ.get('JAX_COMPILATION_CACHE_DIR') is not None:
    return os.environ['JAX_COMPILATION_CACHE_DIR']
  return user_cache.folder('xla')


# JAX caches only programs that compiled in a second or more. A command's draw and evaluation
# compile in ≈ 0.7–0.8 s each (LeNet-5) and its 22 smaller programs in ≈ 0.5 s together; all
# read back faster than they compile, and a repeated command that compiles nothing also peaks
# ≈ 50 MB lower (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
CACHE_MIN_COMPILE_SECONDS = 0.0


def use_compilation_cache(flag_value: str | None) -> None:
  """Points JAX's persistent compilation cache at the folder `compilation_cache_dir` names
  and, unless $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS says otherwise, caches every program
  that compiled in CACHE_MIN_COMPILE_SECONDS or more: all of them. Process-wide: for the
  commands only."""
  jax.config.update('jax_compilation_cache_dir', compilation_cache_dir(flag_value) or None)
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in os.environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', CACHE_MIN_COMPILE_SECONDS)


def collect_garbage_less() -> None:
  """Leaves the objects alive now out of every later garbage collection. Process-wide: for
  the commands only, called once their imports are done.

  Python's full collections walk every live object, most of them the imports' (modules,
  functions, JAX's and Flax's tables), which never become garbage. Frozen, they are left out,
  the interpreter's last collections at exit included: the MNIST command's collections took
  0.47 s, 0.22–0.28 s after, and its exit after the last line 0.49 s, 0.18–0.20 s after
  (BUILD_NOTES.md, "fajax against PyTorch on one CPU").
  """
  gc.collect()  # what is garbage already is freed, not kept for good
  gc.freeze()


def run(body: Callable[..., None], positional: bool = False) -> None:
  """Parses flags and runs `body`; a FajaxError becomes `fajax: error: …` and exit status 2, a
  run stopped by a signal (`fajax.preemption`) one line and exit status 75.

  With `positional`, `body(argv)` receives the command line's positional arguments (argv[1:]
  non-empty is required); otherwise there must be none and `body()` takes nothing.
  """

  def main(argv):
    if positional and len(argv) < 2:
      raise app.UsageError('give at least one workdir')
    if not positional and len(argv) > 1:
      raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
    # Orbax reports every checkpoint step at INFO; the progress lines are what a user reads.
    if not flags.FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    # A process-wide allocator setting: the commands own their process, a library call does not
    # (`fajax.train` from a notebook or a user's program leaves the allocator alone).
    host_memory.retain_freed_buffers()
    use_compilation_cache(_COMPILATION_CACHE_DIR.value)
    collect_garbage_less()
    try:
      body(argv) if positional else body()
    except FajaxError as e:
      print(f'fajax: error: {e}', file=sys.stderr)
      sys.exit(2)
    except preemption.Preempted as e:
      print(f'fajax: {e}', file=sys.stderr)
      sys.exit(preemption.EXIT_CODE)

  app.run(main, flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's parsing, with a mistyped flag or config override as one line and exit status 2."""
  try:
    return flags.FLAGS(_named_configs(argv))
  except (flags.Error, AttributeError, KeyError, OSError, TypeError, ValueError) as e:
    # config_flags reports a mistyped field as AttributeError('\'x\'\nDid you mean ...').
    message = ' '.join(str(e).replace('\\n', ' ').replace("\\'", '').strip('\'"').split())
    if isinstance(e, (AttributeError, KeyError)):
      message = f'no such config field: {message}'
    print(f'fajax: error: {message} (see --helpfull for the flags, the config file for its '
          'fields)', file=sys.stderr)
    sys.exit(2)


def _named_configs(argv: list[str]) -> list[str]:
  """`--config=mnist_fa` (or `--config mnist_fa`) → the packaged experiment's file, so that a
  name works from any directory; a value with a '/' or ending in .py is a path, kept as given."""
  resolved = list(argv)
  for i, arg in enumerate(argv):
    if arg in ('--config', '-config') and i + 1 < len(argv):
      resolved[i + 1] = _config_file(argv[i + 1])
    elif arg.startswith(('--config=', '-config=')):
      flag, _, value = arg.partition('=')
      resolved[i] = f'{flag}={_config_file(value)}'
  return resolved


def _config_file(value: str) -> str:
  name = value.partition(':')[0]  # config_flags passes what follows a ':' to get_config
  if '/' in name or name.endswith('.py'):
    return value
  path = experiments.path_of(name)
  if path is None:
    guesses = difflib.get_close_matches(name, experiments.names(), n=3)
    hint = f' (did you mean {", ".join(guesses)}?)' if guesses else ''
    print(f'fajax: error: no experiment named {name}{hint}: give an experiment\'s name '
          '(fajax/experiments/) or a config file\'s path', file=sys.stderr)
    sys.exit(2)
  return str(path) + value[len(name):]
