"""What the command lines share: the `fajax` command, experiment names and where the
compilation cache lives."""

import gc
import sys
import types
import weakref

import jax
import pytest
from absl import logging

from fajax import cli
from fajax import command
from fajax import experiments


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


def test_the_commands_cache_every_program_unless_told_otherwise(monkeypatch):
  option = 'jax_persistent_cache_min_compile_time_secs'
  # The folder stays the one this session uses.
  monkeypatch.setattr(cli, 'compilation_cache_dir',
                      lambda flag_value: jax.config.jax_compilation_cache_dir)
  before = getattr(jax.config, option)
  try:
    monkeypatch.delenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', raising=False)
    jax.config.update(option, 1.0)  # JAX's default
    cli.use_compilation_cache(None)
    assert getattr(jax.config, option) == cli.CACHE_MIN_COMPILE_SECONDS == 0.0
    monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '3')
    jax.config.update(option, 3.0)  # as JAX reads it from the environment at import
    cli.use_compilation_cache(None)
    assert getattr(jax.config, option) == 3.0
  finally:
    jax.config.update(option, before)


def test_a_command_frees_its_garbage_then_leaves_what_its_imports_made_out_of_collections(
    monkeypatch):
  class Node:
    pass

  cycle, kept = Node(), Node()
  cycle.self = cycle  # garbage only a collection frees
  freed = weakref.ref(cycle)
  del cycle
  seen = {}

  def body():
    seen['frozen'] = gc.get_freeze_count()
    seen['kept is collected'] = any(o is kept for o in gc.get_objects())

  # The process-wide settings that are not this test's subject stay as the session has them,
  # and so do its flags (other tests' modules define required ones): the command's body runs
  # as absl would run it, on an empty command line.
  monkeypatch.setattr(cli.host_memory, 'retain_freed_buffers', lambda: None)
  monkeypatch.setattr(cli, 'use_compilation_cache', lambda flag_value: None)
  monkeypatch.setattr(cli, '_COMPILATION_CACHE_DIR', types.SimpleNamespace(value=None))
  monkeypatch.setattr(cli.app, 'run', lambda main, flags_parser: main(['fajax train']))
  verbosity = logging.get_verbosity()
  try:
    cli.run(body)
  finally:
    gc.unfreeze()
    logging.set_verbosity(verbosity)
  assert freed() is None
  assert seen['frozen'] > 0 and not seen['kept is collected']


def test_an_experiment_name_becomes_its_packaged_file_and_a_path_stays_as_given():
  packaged = str(experiments.path_of('mnist_fa'))
  assert packaged.endswith('fajax/experiments/mnist_fa.py')
  argv = ['fajax train', '--config=mnist_fa', '--config.seed=3', '--workdir=w']
  assert cli._named_configs(argv) == ['fajax train', f'--config={packaged}', '--config.seed=3',
                                      '--workdir=w']
  assert cli._named_configs(['p', '--config', 'mnist_fa']) == ['p', '--config', packaged]
  for path in ('my_config.py', 'configs/mnist_fa', './mnist_fa.py'):
    assert cli._named_configs(['p', f'--config={path}']) == ['p', f'--config={path}']


def test_an_unknown_experiment_name_is_one_line_with_the_closest_names(capsys):
  with pytest.raises(SystemExit) as exit_:
    cli._named_configs(['p', '--config=mnist_fa_usf'])
  assert exit_.value.code == 2
  [line] = capsys.readouterr().err.strip().splitlines()
  assert line.startswith('fajax: error: no experiment named mnist_fa_usf (did you mean '
                         'mnist_fa_usf_sn, mnist_fa_usf_init')


def test_every_experiment_is_named_by_its_file():
  names = experiments.names()
  assert 'mnist_fa' in names and 'imagenet2_fa_usf_sn' in names and '__init__' not in names
  assert all(experiments.path_of(name).stem == name for name in names)
  assert experiments.path_of('nothing') is None


@pytest.mark.parametrize('argv,code,shown', [
    (['fajax'], 2, 'usage: fajax SUBCOMMAND'),
    (['fajax', '--help'], 0, 'export'),
    (['fajax', 'trian'], 2, "no subcommand 'trian'"),
])
def test_the_fajax_command_lists_its_subcommands(monkeypatch, capsys, argv, code, shown):
  monkeypatch.setattr('sys.argv', argv)
  with pytest.raises(SystemExit) as exit_:
    command.main()
  assert exit_.value.code == code
  output = capsys.readouterr()
  assert shown in output.out + output.err


def test_a_subcommand_runs_its_module_with_the_remaining_flags(monkeypatch):
  ran = {}
  monkeypatch.setattr('fajax.report.main', lambda: ran.setdefault('argv', list(sys.argv)))
  monkeypatch.setattr('sys.argv', ['fajax', 'report', 'runs/a', '--out=o'])
  command.main()
  assert ran['argv'] == ['fajax report', 'runs/a', '--out=o']
