"""Command line: train and evaluate one experiment config.

    python -m fajax.main --config=experiments/mnist_bp.py --workdir=runs/mnist_bp \
        [--config.num_epochs=1 --config.seed=1 ...]

Running the same command again on the same workdir resumes from its latest checkpoint.
"""

from absl import flags
from ml_collections import config_flags

from fajax import cli
from fajax import training

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file (experiments/<column>_<method>.py).', lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Folder for config.json, metrics.jsonl and checkpoints.'
)
flags.mark_flags_as_required(['config', 'workdir'])


def train_from_flags():
  metrics = training.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  print(
      f"Done at step {metrics['step']}: test error {metrics['eval/top1_error']:.2f}%, "
      f"test loss {metrics['eval/loss']:.4f}"
  )


if __name__ == '__main__':
  cli.run(train_from_flags)
