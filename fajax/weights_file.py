"""One network's weights as a `.safetensors` file: what `fajax.export` writes and
`config.init_from` starts a run from.

    tensors = named_tensors(NetworkWeights(params, feedback, error_feedback, model_state))
    write('model.safetensors', tensors, {'method': 'fa'})
    weights = start_from(read('model.safetensors'), weights)   # inside the train state's init

Each array is named by its NNX path, keys joined by '/': W, biases and batch-norm statistics
(what inference needs) as `conv1/kernel`, `conv1/bias`, `block/norm/mean`; the feedback weights
under `feedback/`: a layer's B as `feedback/conv1/kernel` (the B of `conv1/kernel`), DFA and
DenseFA matrices at their own path (`feedback/direct/matrices/conv1_from_output`). Without the
`feedback/` entries, the names are those of a plain Flax module with the same layers.
"""

import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import safetensors
import safetensors.numpy

from fajax.errors import ConfigError
from fajax.layers import layer_name

FEEDBACK_PREFIX = 'feedback/'


class NetworkWeights(NamedTuple):
  """One replica's arrays of a network, in the train state's parts (`fajax.train_state`)."""

  params: dict  # W, biases, batch-norm scales: nnx.Param, nested by path
  feedback: dict  # layer name → its B
  error_feedback: dict  # DFA / DenseFA matrices, nested by path
  model_state: dict  # batch-norm statistics, RNG keys and counters, nested by path


def _name(path, leaf) -> str | None:
  """The file's name for a leaf of `NetworkWeights`, or None for one it does not hold."""
  part, *keys = path
  joined = layer_name([key.key for key in keys])
  if part.name == 'params':
    return joined
  if part.name == 'feedback':
    return f'{FEEDBACK_PREFIX}{joined}/kernel'
  if part.name == 'error_feedback':
    return FEEDBACK_PREFIX + joined
  # Of the other variables, the floating-point ones (batch-norm statistics) shape the outputs;
  # RNG keys and counters do not.
  return joined if jax.dtypes.issubdtype(leaf.dtype, jnp.floating) else None


def named_tensors(weights: NetworkWeights) -> dict:
  """Every array of `weights` the file holds, by its name in the file."""
  flat, _ = jax.tree_util.tree_flatten_with_path(weights)
  named = {_name(path, leaf): leaf for path, leaf in flat}
  named.pop(None, None)
  return named


def _forward(names) -> set[str]:
  return {name for name in names if not name.startswith(FEEDBACK_PREFIX)}


def start_from(tensors: dict, weights: NetworkWeights) -> NetworkWeights:
  """`weights` with the file's `tensors` in their place.

  The file must hold exactly the model's W, biases and batch-norm statistics, of the same
  shapes. Its feedback entries replace the run's where the run has that B or DFA matrix (the
  method's rule then sets B from W, as at any start, unless it keeps B as it is); the others
  are left out, so that a file from any method starts a run of any other. Raises ConfigError
  naming the first entry that differs.
  """
  own = named_tensors(weights)
  fix = ('give a file exported from a run of this model (fajax export), or set '
         'init_from=""')
  missing = sorted(_forward(own) - _forward(tensors))
  if missing:
    raise ConfigError(f"config.init_from has no {missing[0]}, which this run's model has: {fix}")
  extra = sorted(_forward(tensors) - _forward(own))
  if extra:
    raise ConfigError(f"config.init_from holds {extra[0]}, which this run's model has not: {fix}")
  for name in sorted(own.keys() & tensors.keys()):
    if tuple(tensors[name].shape) != tuple(own[name].shape):
      raise ConfigError(
          f'config.init_from holds {name} of shape {tuple(tensors[name].shape)}, but this '
          f"run's model has {tuple(own[name].shape)}: {fix}")

  def replaced(path, leaf):
    name = _name(path, leaf)
    return tensors[name].astype(leaf.dtype) if name in tensors else leaf

  return jax.tree_util.tree_map_with_path(replaced, weights)


def write(path: str, tensors: dict, metadata: dict[str, str]) -> None:
  """Writes `tensors` and the string → string `metadata` to `path` at once: a reader sees the
  old file or the new one, never half of one."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  temporary = f'{path}.tmp.{os.getpid()}'
  try:
    safetensors.numpy.save_file(
        {name: np.ascontiguousarray(x) for name, x in tensors.items()}, temporary, metadata)
    os.replace(temporary, path)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def read(path: str) -> dict[str, np.ndarray]:
  """The arrays of the file `config.init_from` names, or a ConfigError saying what is wrong."""
  if not os.path.isfile(path):
    raise ConfigError(
        f'config.init_from: no file {path}; give a .safetensors file written by '
        'fajax export --workdir=RUN --out=FILE')
  try:
    return safetensors.numpy.load_file(path)
  except (safetensors.SafetensorError, OSError, ValueError) as e:
    raise ConfigError(
        f'config.init_from: {path} is not a readable .safetensors file ({e}); export it again '
        'with fajax export') from e
