"""The `fajax` command: `fajax SUBCOMMAND [flags]`, each subcommand the same program as
`python -m fajax.<module>`.

    fajax train --config=mnist_fa --workdir=runs/mnist_fa
    fajax column --column=mnist --workdir=runs/mnist --seeds=5
    fajax report runs/mnist/*/ --out=report
    fajax plot runs/mnist_fa --out=plots
    fajax export --workdir=runs/mnist_fa --out=mnist_fa.safetensors
"""

import importlib
import sys

SUBCOMMANDS = {
    'train': ('fajax.main', 'train one experiment config (or resume it)'),
    'column': ('fajax.column', 'train a column of the results table over seeds and a sweep'),
    'report': ('fajax.report', 'the results table of finished runs next to the paper\'s'),
    'plot': ('fajax.plot', 'learning curves and alignment plots of runs'),
    'export': ('fajax.export', 'a run\'s weights and feedback weights as a .safetensors file'),
}


def usage() -> str:
  lines = ['usage: fajax SUBCOMMAND [flags]   (fajax SUBCOMMAND --help for its flags)', '']
  lines += [f'  {name:<8}{summary}' for name, (_, summary) in SUBCOMMANDS.items()]
  return '\n'.join(lines)


def main() -> None:
  if len(sys.argv) < 2 or sys.argv[1] in ('-h', '--help', 'help'):
    print(usage())
    sys.exit(0 if len(sys.argv) >= 2 else 2)
  name = sys.argv[1]
  if name not in SUBCOMMANDS:
    print(f'fajax: error: no subcommand {name!r}\n{usage()}', file=sys.stderr)
    sys.exit(2)
  module = importlib.import_module(SUBCOMMANDS[name][0])
  # absl reads the flags from sys.argv, and names the program after its first entry.
  sys.argv = [f'fajax {name}', *sys.argv[2:]]
  module.main()
