"""The experiment configs, `<column>_<method>.py`: one per cell of the results table, and the
ViT's beyond it (column `mnist_vit`).

They ship inside the package, so a config can be named instead of given by path, from any
directory: `fajax train --config=mnist_fa` (`fajax.experiments.path_of`).
"""

import pathlib

FOLDER = pathlib.Path(__file__).resolve().parent


def names() -> list[str]:
  """Every experiment's name, e.g. 'mnist_fa'."""
  return sorted(path.stem for path in FOLDER.glob('*.py') if path.stem != '__init__')


def path_of(name: str) -> pathlib.Path | None:
  """The config file of the experiment called `name`, or None when there is none."""
  path = FOLDER / f'{name}.py'
  return path if name in names() else None
