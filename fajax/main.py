"""Command line: train and evaluate one experiment config.

    python -m fajax.main --config=experiments/mnist_bp.py --workdir=/tmp/fajax/mnist_bp \
        [--config.num_epochs=1 --config.seed=1 ...]

Running the same command again on the same workdir resumes from its latest checkpoint.
"""

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from fajax import training
from fajax.errors import FajaxError

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (experiments/<column>_<method>.py).', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Folder for config.json, metrics.jsonl and checkpoints.'
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  # Orbax reports every checkpoint step at INFO; the progress lines are what a user reads.
  if not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)
  try:
    metrics = training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  except FajaxError as e:
    print(f'fajax: error: {e}', file=sys.stderr)
    sys.exit(2)
  print(
      f"Done at step {metrics['step']}: test error {metrics['eval/top1_error']:.2f}%, "
      f"test loss {metrics['eval/loss']:.4f}"
  )


if __name__ == '__main__':
  app.run(main)
