"""fajax as an installed package: the wheel, its `fajax` command away from the source tree, the
API reference and the type check."""

import os
import pathlib
import shutil
import site
import subprocess
import sys
import venv

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent


def _run(args, **kwargs):
  return subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
  """The wheel `python -m build` makes from the tracked files (a copy, so the checkout gets no
  build/ folder)."""
  source = tmp_path_factory.mktemp('source')
  tracked = _run(['git', 'ls-files', '-z'], cwd=REPO).stdout.split('\0')
  for name in filter(None, tracked):
    if (REPO / name).is_file():
      (source / name).parent.mkdir(parents=True, exist_ok=True)
      shutil.copy2(REPO / name, source / name)
  out = tmp_path_factory.mktemp('dist')
  # No isolation: the build backend (setuptools) is already installed, and a test never downloads.
  built = _run([sys.executable, '-m', 'build', '--wheel', '--no-isolation', '--outdir', str(out),
                str(source)])
  assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
  [path] = out.glob('fajax-*.whl')
  return path


def test_the_wheel_ships_the_experiment_configs(wheel):
  import zipfile  # pylint: disable=g-import-not-at-top

  names = zipfile.ZipFile(wheel).namelist()
  assert 'fajax/experiments/mnist_fa.py' in names and 'fajax/experiments/__init__.py' in names
  assert not any(name.startswith(('tests/', 'benchmarks/', 'experiments/')) for name in names)
  entry_points = next(n for n in names if n.endswith('.dist-info/entry_points.txt'))
  assert 'fajax = fajax.command:main' in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_installed_wheel_trains_from_an_unrelated_directory(wheel, tmp_path,
                                                                mnist_data_dir):
  environment = tmp_path / 'venv'
  venv.create(environment, with_pip=False)
  python = environment / 'bin' / 'python'
  # The dependencies come from this interpreter's site-packages through a path file, so nothing
  # is downloaded; its .pth files are not run from there, so the editable install of this
  # checkout stays out of the new environment.
  purelib = _run([str(python), '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))'])
  (pathlib.Path(purelib.stdout.strip()) / 'dependencies.pth').write_text(
      '\n'.join(site.getsitepackages()) + '\n')
  installed = _run([sys.executable, '-m', 'pip', '--python', str(python), 'install', '--no-index',
                    '--no-build-isolation', str(wheel)])
  assert installed.returncode == 0, installed.stderr[-2000:]

  elsewhere = tmp_path / 'elsewhere'
  elsewhere.mkdir()
  env = {**os.environ, 'FAJAX_DATA_DIR': mnist_data_dir, 'PYTHONPATH': ''}
  where = _run([str(python), '-c', 'import fajax; print(fajax.__file__)'], cwd=elsewhere, env=env)
  assert where.stdout.startswith(str(environment)), where.stdout + where.stderr
  trained = _run(
      [str(environment / 'bin' / 'fajax'), 'train', '--config=mnist_bp', '--workdir=run',
       '--config.num_train_steps=3', '--config.train_examples_limit=512',
       '--config.eval_examples_limit=256', '--config.diagnostics=False'],
      cwd=elsewhere, env=env)
  assert trained.returncode == 0, trained.stderr[-3000:]
  assert 'Done at step 3' in trained.stdout
  assert (elsewhere / 'run' / 'metrics.jsonl').exists()


def test_the_api_reference_builds_without_a_warning(tmp_path):
  built = _run([sys.executable, '-m', 'pdoc', '-o', str(tmp_path), 'fajax'], cwd=tmp_path)
  assert built.returncode == 0 and not built.stderr.strip(), built.stderr[-3000:]
  pages = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob('*.html')}
  assert {'fajax.html', 'fajax/experiment.html', 'fajax/loop.html', 'fajax/layers.html',
          'fajax/rules.html', 'fajax/convert.html'} <= pages
  # The entry points a user reads first, each documented on its module's page.
  assert 'id="build"' in (tmp_path / 'fajax' / 'experiment.html').read_text()
  assert 'id="train"' in (tmp_path / 'fajax' / 'loop.html').read_text()
  assert 'id="to_feedback"' in (tmp_path / 'fajax' / 'convert.html').read_text()


def test_fajax_passes_the_type_check():
  checked = _run([sys.executable, '-m', 'mypy'], cwd=REPO)
  assert checked.returncode == 0, checked.stdout[-4000:]
