"""Command line: train and evaluate one experiment config.

    fajax train --config=mnist_bp --workdir=runs/mnist_bp \
        [--config.num_epochs=1 --config.seed=1 ...]

Running the same command again on the same workdir resumes from its latest checkpoint. For a
multi-process run, start one such command per process with --coordinator_address=HOST:PORT
--num_processes=N --process_id=I (launch/ has scripts); on SLURM or a Cloud TPU pod JAX finds
these itself.
"""

import jax
from absl import flags
from ml_collections import config_flags

from fajax import cli
from fajax import loop
from fajax import sharding
from fajax.errors import ConfigError


def load_config():
  """The --config, or a ConfigError saying why its file could not be loaded."""
  config = flags.FLAGS.config
  try:
    config.get('method')  # config_flags defers a load failure to the first use
  except OSError as e:
    cause = ' '.join(str(e.__cause__ or e).split())
    raise ConfigError(f'cannot load --config: {cause}') from e
  return config


def train_from_flags():
  config = load_config()
  sharding.initialize(flags.FLAGS.coordinator_address, flags.FLAGS.num_processes,
                      flags.FLAGS.process_id)
  metrics = loop.train(config, flags.FLAGS.workdir)
  if jax.process_index() == 0:
    count = len(metrics['replicas'])
    of_replicas = f' (mean of {count} replicas)' if count > 1 else ''
    print(
      f"Done at step {metrics['step']}{of_replicas}: test error "
      f"{metrics['eval/top1_error']:.2f}%, test loss {metrics['eval/loss']:.4f}"
    )


def main():
  # Defined here, not on import: fajax.column, importable beside this module (as in the API
  # reference), has its own --workdir.
  config_flags.DEFINE_config_file(
      'config', None,
      'Experiment: a name such as mnist_fa (fajax/experiments/), or a config file\'s path.',
      lock_config=True)
  flags.DEFINE_string('workdir', None, 'Folder for config.json, metrics.jsonl and checkpoints.')
  flags.DEFINE_string(
      'coordinator_address', None, 'host:port of process 0, for a multi-process run.')
  flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
  flags.DEFINE_integer('process_id', None, 'This process\'s index, from 0.')
  flags.mark_flags_as_required(['config', 'workdir'])
  cli.run(train_from_flags)


if __name__ == '__main__':
  main()
