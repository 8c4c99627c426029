"""`build`: the one place where a config, and optionally a caller's model and data, become
everything training needs (an `Experiment`).

    experiment = fajax.build(config)                      # the config's model and dataset
    experiment = fajax.build(config, model=my_module, data=my_data)
    state, metrics = experiment.train_step(experiment.state, *experiment.put_batch(x, y))

`fajax.train` is `build` plus the training loop (`fajax.loop`).
"""

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator
from typing import Any

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx

from fajax import caller_objects as caller_objects_lib
from fajax import datasets
from fajax import diagnostics
from fajax import methods
from fajax import models
from fajax import profiling
from fajax import programs
from fajax import replicas as replicas_lib
from fajax import sharding
from fajax import steps
from fajax import trackers
from fajax import weights_file
from fajax import wiring
from fajax.errors import ConfigError
from fajax.optimizers import HYPERPARAMS, LR_SCHEDULES, OPTIMIZERS, create_optimizer
from fajax.train_state import Model, TrainState, make_initializer, make_network_program

COMPUTE_DTYPES = ('float32', 'bfloat16')
_POSITIVE = ('positive', lambda v: math.isfinite(v) and v > 0)
_NOT_NEGATIVE = ('0 or positive', lambda v: math.isfinite(v) and v >= 0)
# Every numeric field a run reads, and the values it can run with.
_RANGES = {
    **{field: _POSITIVE for field in (
        'batch_size', 'eval_batch_size', 'log_every_steps', 'eval_every_epochs',
        'checkpoint_every_steps', 'checkpoints_to_keep', 'data_workers', 'image_size',
        'steps_per_call', 'replicas', 'learning_rate', 'direct_feedback_memory_budget_mb',
        'model_width')},
    **{field: _NOT_NEGATIVE for field in (
        'weight_decay', 'feedback_noise_std', 'warmup_steps', 'validation_examples',
        'train_examples_limit', 'eval_examples_limit')},
    'momentum': ('in [0, 1)', lambda v: 0 <= v < 1),
}


def _choose(name: str, value: str, choices, alternative: str = '') -> None:
  if value not in choices:
    what = f'config.{name} is empty' if not value else f"unknown {name} '{value}'"
    raise ConfigError(f"{what}; choose one of: {', '.join(choices)}{alternative}")


def validate_config(config: ml_collections.ConfigDict, *, model_given: bool = False,
                    data_given: bool = False) -> None:
  """Raises ConfigError, naming the field and the valid values, for a config that cannot run.

  `config.model` / `config.dataset` may stay empty when the caller passes the object itself.
  """
  _choose('method', config.method, methods.METHODS)
  if not data_given and not config.dataset.startswith(datasets.TFDS_PREFIX):
    _choose('dataset', config.dataset, datasets.LOADERS,
            ', tfds:<name> (any TFDS image-classification dataset), or pass data= to fajax.train')
  if not model_given:
    _choose('model', config.model, models.MODELS, ', or pass model= to fajax.train')
  _choose('kernel_init', config.kernel_init, models.KERNEL_INITIALIZERS)
  _choose('optimizer', config.optimizer, OPTIMIZERS)
  _choose('lr_schedule', config.lr_schedule, LR_SCHEDULES)
  _choose('compute_dtype', config.compute_dtype, COMPUTE_DTYPES)
  trackers.check(config.trackers)
  profiling.parse(config.profile_steps)
  for field, (requirement, holds) in _RANGES.items():
    if not holds(config[field]):
      raise ConfigError(f'{field} must be {requirement}, got {config[field]}')
  for field, values in config.sweep.items():
    if field not in HYPERPARAMS:
      raise ConfigError(f"cannot sweep {field}; sweep any of: {', '.join(HYPERPARAMS)}")
    requirement, holds = _RANGES[field]
    for value in values:
      if not isinstance(value, (int, float)) or not holds(value):
        raise ConfigError(f'sweep.{field}: {field} must be {requirement}, got {value!r}')
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError('set num_epochs or num_train_steps to a positive number of steps')


def _network_source(config, spec: datasets.Spec, module: nnx.Module | None):
  """`make_network(direct_mode, inputs, seed)`, its inputs, and a tuple of everything else it
  reads (for `programs.networks`' key), for `make_network_program`.

  The config's model is built inside the jitted program, from keys of the replica's seed. A
  caller's module enters as its variables (every replica starts from them), and only its
  DFA/DenseFA matrices are drawn from the seed.
  """
  both_read = (tuple(spec.input_shape), spec.num_classes,
               config.direct_feedback_memory_budget_mb)  # by either kind of network
  if module is None:

    def make_config_network(direct_mode, inputs, seed):
      del inputs
      params_key, feedback_key, dropout_key = jax.random.split(jax.random.key(seed), 3)
      return models.create(
          config.model, spec.num_classes, spec.input_shape, config.kernel_init,
          nnx.Rngs(params=params_key, feedback=feedback_key, dropout=dropout_key),
          direct_mode=direct_mode,
          direct_memory_budget_mb=config.direct_feedback_memory_budget_mb,
          error_after_pooling=config.error_after_pooling, width=config.model_width)

    return make_config_network, None, (*both_read, config.model, config.kernel_init,
                                       config.error_after_pooling, config.model_width)

  caller_objects_lib.check_model(module, spec, config)
  graphdef, variables = nnx.split(module)

  def make_caller_network(direct_mode, variables, seed):
    matrices_key = jax.random.fold_in(jax.random.key(seed), 1)
    return wiring.wire(nnx.merge(graphdef, variables), direct_mode, spec.input_shape,
                       spec.num_classes, nnx.Rngs(feedback=matrices_key),
                       config.direct_feedback_memory_budget_mb, type(module).__name__)

  return make_caller_network, variables, (*both_read, graphdef, type(module).__name__)


def _jit_programs(structure: Model, initialize: Callable, state_shardings: Any,
                  optimizer: optax.GradientTransformation, method: methods.Method,
                  mesh: jax.sharding.Mesh) -> programs.Programs:
  """The experiment's steps, jitted around its structure, optimizer and method; each returns
  the state laid out as it came in and its metrics replicated."""
  replicated = sharding.replicated(mesh)
  jit_step = lambda fn, **kwargs: jax.jit(
      functools.partial(fn, model=structure, optimizer=optimizer, method=method, **kwargs),
      out_shardings=(state_shardings, replicated), donate_argnums=0)
  return programs.Programs(
      model=structure, initialize=initialize,
      train_step=jit_step(steps.train_replicas),
      diagnose_step=jit_step(steps.train_replicas, diagnose=True),
      train_steps=jit_step(steps.train_replicas_stacked),
      eval_step=jax.jit(functools.partial(steps.eval_replicas, model=structure),
                        out_shardings=replicated))


def _summed(totals: list[dict], prefix: str) -> dict[str, np.ndarray]:
  """Per-replica loss and top-1 error (%) from the sums of every batch."""
  count = sum(t['count'] for t in totals)
  return {f'{prefix}/loss': sum(t['loss'] for t in totals) / count,
          f'{prefix}/top1_error': 100.0 * sum(t['errors'] for t in totals) / count}


@dataclasses.dataclass(frozen=True)
class Experiment:
  """Everything a run trains with; made by `build`.

  `state` is the initial train state of every replica (`replicas`, the leading axis of each
  leaf), already laid out on `mesh`. The step functions are jitted and *donate* their state
  argument: after a call, use the state it returns. Batches carry a leading replica axis.

  - `train_step(state, images, labels) -> (state, metrics)`: one step of every replica
    (`steps.train_replicas`); metrics per replica;
  - `diagnose_step(...)`: the same step, also returning the `align/...` diagnostics;
  - `train_steps(state, images, labels)`: several steps in one call, batches [step, replica, ...];
  - `eval_step(state, images, labels, mask) -> sums` per replica, on a batch they share;
    `evaluate(state)` runs it over a whole split.
  `health_checks[i]` names check i (`TrainState.diverged_check`).
  """

  config: ml_collections.ConfigDict
  data: Any  # datasets.Dataset
  model: Model
  method: methods.Method
  optimizer: optax.GradientTransformation
  schedule: Callable[[int, Any], Any]  # (step, peak learning rate) → learning rate
  mesh: jax.sharding.Mesh
  replicas: list[replicas_lib.Replica]
  state: TrainState
  total_steps: int
  steps_per_epoch: int
  train_step: Callable
  diagnose_step: Callable
  train_steps: Callable
  eval_step: Callable
  health_checks: list[str]
  caller_objects: dict[str, str]  # 'model' / 'data' → the caller's object's class, if given

  def train_batches(self, start_step: int) -> Iterator[tuple]:
    """This process's rows of every replica's batch of each step from `start_step` on."""
    seeds, _ = replicas_lib.stacked(self.replicas)
    return datasets.replica_batches(
        self.data, seeds, self.config.batch_size, start_step, self.total_steps - start_step,
        jax.process_index(), jax.process_count())

  def put_batch(self, images, labels, stacked: bool = False) -> tuple[jax.Array, jax.Array]:
    """This process's rows of a global batch [replica, example, ...] (stacked: [step, replica,
    example, ...]) as global arrays on the mesh."""
    batch_sharding = sharding.batch_sharding(self.mesh, 2 if stacked else 1)
    return (sharding.global_array(images, batch_sharding),
            sharding.global_array(labels, batch_sharding))

  def eval_batches(self, split: str = datasets.TEST) -> Iterator[tuple[jax.Array, ...]]:
    """A split's (images, labels, mask), each a global array on the mesh; each process reads
    only its own rows."""
    batch_sharding = sharding.batch_sharding(self.mesh)
    for batch in self.data.eval_batches(self.config.eval_batch_size, split,
                                        jax.process_index(), jax.process_count()):
      yield tuple(sharding.global_array(x, batch_sharding) for x in batch)

  def evaluate(self, state: TrainState) -> dict[str, np.ndarray]:
    """Per-replica loss and top-1 error (%) on the test split ('eval/...') and, with
    `config.validation_examples`, on the validation split ('validation/...')."""
    splits = {'eval': datasets.TEST}
    if self.config.validation_examples:
      splits['validation'] = datasets.VALIDATION
    metrics = {}
    for prefix, split in splits.items():
      totals = jax.device_get([self.eval_step(state, *b) for b in self.eval_batches(split)])
      metrics.update(_summed(totals, prefix))
    return metrics

  def network(self, state: TrainState, replica: int = 0) -> nnx.Module:
    """The NNX module holding one replica's weights (W, B, DFA matrices, statistics)."""
    return self.model.network(jax.tree.map(lambda x: x[replica], jax.device_get(state)))


def build(config: ml_collections.ConfigDict, *, model: nnx.Module | None = None,
          data: Any = None) -> Experiment:
  """The experiment of `config`: data, model, method, optimizer, state and jitted steps.

  `model`: an NNX module built from fajax's feedback layers (or converted by
  `fajax.to_feedback`), used instead of `config.model` (the run's seed then draws only
  DFA/DenseFA matrices; W and B are the module's). The fields that build the built-in model
  (`model`, `model_width`, `kernel_init`, `error_after_pooling`) then do not apply: DFA's
  error enters at the module's own taps, or else at its feedback layers' inputs
  (`fajax.wiring`). `data`: an object with the protocol of `datasets.Dataset`, used instead of
  `config.dataset`. With `config.init_from`, every replica starts from that file's weights
  (`fajax.weights_file.start_from`). Raises ConfigError for a config, model, data or
  init_from file that cannot run.
  """
  validate_config(config, model_given=model is not None, data_given=data is not None)
  initial_weights = weights_file.read(config.init_from) if config.init_from else None
  caller_objects = caller_objects_lib.describe(model, data)
  replicas = replicas_lib.plan(config)
  mesh = sharding.make_mesh()
  sharding.check_batch_sizes(config, mesh)
  if data is None:
    data = datasets.load(config)
  else:
    caller_objects_lib.check_dataset(data)
  if config.validation_examples:
    if not hasattr(data, 'hold_out'):
      raise ConfigError('validation_examples needs data with hold_out(n) (fajax.datasets.'
                        'Dataset); set it to 0 or give data that can hold out examples')
    data = data.hold_out(config.validation_examples)
  if data.num_train < config.batch_size:
    raise ConfigError(
        f'batch_size {config.batch_size} is larger than the {data.num_train} training examples')
  steps_per_epoch = data.num_train // config.batch_size
  total_steps = (config.num_train_steps if config.num_train_steps > 0
                 else config.num_epochs * steps_per_epoch)

  optimizer, schedule = create_optimizer(config, total_steps)
  make_network, network_inputs, network_reads = _network_source(config, data.spec, model)
  method_config = caller_objects_lib.method_config(config, model)
  make_method = lambda seed: methods.build(method_config, optimizer, seed)
  method = make_method(config.seed)  # its update is every replica's: only init draws
  seeds, hyperparams = replicas_lib.stacked(replicas)
  experiment_key = None if initial_weights is not None else programs.key(
      config, total_steps, data.spec, mesh, None if model is None else nnx.graphdef(model))
  compiled = programs.experiments.recall(experiment_key)
  if compiled is None:
    network_key = programs.key(None, network_reads, method.direct_mode, mesh,
                               config.shard_large_params, len(seeds))
    network = programs.networks.recall(network_key)
    if network is None:
      network = make_network_program(
          make_network, network_inputs, method.direct_mode, tuple(data.spec.input_shape), seeds,
          mesh=mesh, shard_large_params=config.shard_large_params)
      programs.networks.remember(network_key, network)
    compiled = _jit_programs(*make_initializer(
        network, optimizer, make_method, data.spec.preprocess, seeds, hyperparams,
        compute_dtype=config.compute_dtype, mesh=mesh,
        shard_large_params=config.shard_large_params, initial_weights=initial_weights),
        optimizer, method, mesh)
    programs.experiments.remember(experiment_key, compiled)
  state = compiled.initialize(network_inputs, seeds, hyperparams, initial_weights)
  return Experiment(
      config=config, data=data, model=compiled.model, method=method, optimizer=optimizer,
      schedule=schedule, mesh=mesh, replicas=replicas, state=state, total_steps=total_steps,
      steps_per_epoch=steps_per_epoch, train_step=compiled.train_step,
      diagnose_step=compiled.diagnose_step, train_steps=compiled.train_steps,
      eval_step=compiled.eval_step,
      health_checks=diagnostics.health_checks(
          [layer for layer, _ in compiled.model.hidden_shapes], state.feedback),
      caller_objects=caller_objects,
  )
