"""Command line and function: one replica's weights of a run, out of its latest checkpoint,
as a `.safetensors` file (names: `fajax.weights_file`).

    fajax export --workdir=runs/mnist_fa --out=mnist_fa.safetensors [--replica=R]

The file holds W, biases and batch-norm statistics by path (`conv1/kernel`), the feedback
weights under `feedback/` (`feedback/conv1/kernel`), and as metadata the run's method, model,
dataset, config (JSON), the checkpoint's step, and the replica's index, seed and
hyper-parameters. The run may be finished or interrupted, and may have trained a caller's model
or data: the checkpoint itself holds every array by its path, so nothing is rebuilt.
`config.init_from` starts a run from the file; README.md shows how a plain Flax module loads it.
"""

import json
import os

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import flags

from fajax import cli
from fajax import replicas as replicas_lib
from fajax import weights_file
from fajax import workdir as workdir_lib
from fajax.errors import CheckpointError
from fajax.errors import ConfigError

# What the export reads of a checkpoint, leaving the optimizer's and the rule's state on disk.
_PARTS = (*weights_file.NetworkWeights._fields, 'step', 'diverged_step')


def _saved_config(workdir: str) -> dict:
  """config.json of the run in `workdir`: its config, and the caller's objects it trained."""
  path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
  if not os.path.isfile(path):
    raise CheckpointError(f'{workdir} holds no fajax run ({workdir_lib.CONFIG_FILE} is '
                          'missing); give the --workdir of a run')
  with open(path) as f:
    return json.load(f)


def _latest_checkpoint(workdir: str) -> dict:
  """The `_PARTS` of every replica at the run's latest checkpoint, as numpy arrays."""
  steps = workdir_lib.checkpoint_steps(workdir)
  if not steps:
    raise CheckpointError(
        f'the run in {workdir} has no checkpoint yet; export it once it has saved one '
        '(every config.checkpoint_every_steps steps, and at its end)')
  step, directory = max(steps), workdir_lib.checkpoint_directory(workdir)
  # The PyTree handler restores a part of what the run's Standard handler saved, onto the
  # host: the export needs neither the optimizer state nor the devices the run had.
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False),
      item_handlers=ocp.PyTreeCheckpointHandler())
  try:
    saved = manager.item_metadata(step).tree
    wanted = {part: saved[part] for part in _PARTS}
    return manager.restore(step, args=ocp.args.PyTreeRestore(
        jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), wanted),
        restore_args=jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), wanted),
        partial_restore=True))
  except Exception as e:  # pylint: disable=broad-except  # Orbax raises many kinds.
    raise CheckpointError(
        f'the checkpoint at step {step} in {directory} cannot be read ({type(e).__name__}); '
        'run the training command once more: it resumes from the checkpoint before it and '
        'saves a new one') from e
  finally:
    manager.close()


def export(workdir: str, out_path: str, replica: int = 0) -> dict[str, str]:
  """Writes replica `replica` of the run in `workdir`, at its latest checkpoint, to `out_path`
  (a `.safetensors` file, replaced at once); returns the metadata written with it.

  Raises CheckpointError for a workdir without a readable checkpoint, ConfigError for a
  replica the run has not.
  """
  if not os.path.isdir(workdir):
    raise CheckpointError(f'no folder {workdir}; give the --workdir of a run')
  saved = _latest_checkpoint(workdir)
  record = _saved_config(workdir)
  count = len(saved['step'])
  if not 0 <= replica < count:
    raise ConfigError(f'the run in {workdir} has no replica {replica}: it has {count} '
                      f'(0 to {count - 1}); choose one with --replica')
  caller_objects = record.get(workdir_lib.CALLER_OBJECTS_KEY, {})
  config = ml_collections.ConfigDict(
      {k: v for k, v in record.items() if k != workdir_lib.CALLER_OBJECTS_KEY})
  planned = replicas_lib.plan(config)
  if len(planned) != count:
    raise CheckpointError(
        f'config.json in {workdir} describes {len(planned)} replicas, but its checkpoint holds '
        f'{count}: run the training command that wrote the checkpoint once more, which '
        'rewrites config.json')
  one = jax.tree.map(lambda x: x[replica], saved)
  metadata = {
      'method': config.method,
      'model': config.model or caller_objects.get('model', ''),
      'dataset': config.dataset or caller_objects.get('data', ''),
      'config': json.dumps(record),
      'step': str(int(one['step'])),
      'replica': str(replica),
      'seed': str(planned[replica].seed),
      **{f'hparams/{k}': str(v) for k, v in planned[replica].hyperparams.items()},
  }
  if one['diverged_step'] >= 0:  # frozen at its last good state since that step
    metadata['diverged_step'] = str(int(one['diverged_step']))
  network = weights_file.NetworkWeights(
      *(one[part] for part in weights_file.NetworkWeights._fields))
  weights_file.write(out_path, weights_file.named_tensors(network), metadata)
  return metadata


def export_from_flags():
  metadata = export(flags.FLAGS.workdir, flags.FLAGS.out, flags.FLAGS.replica)
  print(f"Wrote {flags.FLAGS.out}: replica {metadata['replica']} (seed {metadata['seed']}) of "
        f"{metadata['method']} {metadata['model']} at step {metadata['step']}")


def main():
  # Defined here, not on import: fajax.main, imported beside this module, has its own --workdir.
  flags.DEFINE_string('workdir', None, 'The run to export: a folder fajax.main trained in.')
  flags.DEFINE_string('out', None, 'The .safetensors file to write.')
  flags.DEFINE_integer('replica', 0, 'Which of the run\'s replicas (config.replicas × sweep).')
  flags.mark_flags_as_required(['workdir', 'out'])
  cli.run(export_from_flags)


if __name__ == '__main__':
  main()
