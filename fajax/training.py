"""Training and evaluation: small pure step functions and one linear loop.

    model, state = create_train_state(config, data.spec, optimizer, method)
    state, metrics = train_step(state, images, labels, model=..., optimizer=..., method=...)
    sums = eval_step(state, images, labels, mask, model=...)
    final_metrics = train_and_evaluate(config, workdir)
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from flax import traverse_util

from fajax import datasets
from fajax import methods
from fajax import models
from fajax import sharding
from fajax import diagnostics
from fajax import direct
from fajax import host_memory
from fajax.direct import ErrorFeedback
from fajax.errors import ConfigError
from fajax.errors import CheckpointError
from fajax.errors import DivergenceError
from fajax.layers import Feedback

OPTIMIZERS = ('sgd', 'adam')
_LEARNED_OR_FEEDBACK = nnx.Any(nnx.Param, Feedback, ErrorFeedback)
LR_SCHEDULES = ('constant', 'cosine')
COMPUTE_DTYPES = ('float32', 'bfloat16')


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict  # the model's nnx.Param state as a nested dict: W and biases
  feedback: dict  # layer name → that layer's feedback weights B
  error_feedback: dict  # DFA / DenseFA matrices (fixed), empty for other methods
  model_state: dict  # every other model variable: batch-norm statistics, dropout RNG counts
  opt_state: optax.OptState
  rule_state: Any
  constraint_state: Any


@dataclasses.dataclass(frozen=True)
class Model:
  """The model's structure (static under jit) and how raw batches become its inputs.

  `exact_graphdef` is the same model without DFA/DenseFA wiring: with B = W it is exact BP, the
  reference of the alignment diagnostics. `hidden_shapes` are the (layer, shape) of its hidden
  pre-activations. The forward and backward passes run in `compute_dtype`: W, B, DFA matrices,
  batch-norm scales and inputs are cast to it, while the state (W, B, optimizer, batch-norm
  statistics) stays float32, the gradients arrive in float32 and the loss is computed in it.
  """

  graphdef: nnx.GraphDef
  exact_graphdef: nnx.GraphDef
  hidden_shapes: tuple
  preprocess: Any
  compute_dtype: Any = jnp.float32

  def apply(
      self, state: 'TrainState', params: dict, raw_images: jax.Array, train: bool,
      exact: bool = False,
  ) -> tuple[jax.Array, dict]:
    """Logits of the model with `params` and the rest of `state`, and the new model state.

    `train` selects batch statistics (and updates the running ones) and active dropout;
    `exact` runs exact backprop (B = W, no direct feedback) instead of the method.
    """
    feedback = layer_kernels(params, state.feedback) if exact else state.feedback
    feedback = traverse_util.unflatten_dict(
        {(*layer.split('/'), 'feedback'): b for layer, b in feedback.items()}
    )
    cast = lambda tree: jax.tree.map(lambda x: x.astype(self.compute_dtype), tree)
    network = nnx.merge(
        self.exact_graphdef if exact else self.graphdef, cast(params), cast(feedback),
        {} if exact else cast(state.error_feedback), state.model_state,
    )
    if train:
      network.train()
    else:
      network.eval()
    logits = network(cast(self.preprocess(raw_images)))
    model_state = nnx.to_pure_dict(nnx.state(network, nnx.Not(_LEARNED_OR_FEEDBACK)))
    return logits.astype(jnp.float32), model_state


def _choose(name: str, value: str, choices) -> None:
  if value not in choices:
    raise ConfigError(f"unknown {name} '{value}'; choose one of: {', '.join(choices)}")


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError, naming the field and the valid values, for a config that cannot run."""
  _choose('method', config.method, methods.METHODS)
  _choose('dataset', config.dataset, datasets.LOADERS)
  _choose('model', config.model, models.MODELS)
  _choose('kernel_init', config.kernel_init, models.KERNEL_INITIALIZERS)
  _choose('optimizer', config.optimizer, OPTIMIZERS)
  _choose('lr_schedule', config.lr_schedule, LR_SCHEDULES)
  _choose('compute_dtype', config.compute_dtype, COMPUTE_DTYPES)
  for field in ('batch_size', 'eval_batch_size', 'log_every_steps', 'eval_every_epochs',
                'checkpoint_every_steps', 'checkpoints_to_keep', 'data_workers', 'image_size',
                'steps_per_call'):
    if config[field] <= 0:
      raise ConfigError(f'{field} must be positive, got {config[field]}')
  if config.num_train_steps <= 0 and config.num_epochs <= 0:
    raise ConfigError('set num_epochs or num_train_steps to a positive number of steps')
  if config.learning_rate <= 0:
    raise ConfigError(f'learning_rate must be positive, got {config.learning_rate}')


def layer_kernels(params: dict, layers) -> dict:
  """W of every feedback layer in `layers` (e.g. the feedback dict), keyed by layer name."""
  flat = traverse_util.flatten_dict(params, sep='/')
  return {layer: flat[f'{layer}/kernel'] for layer in layers}


def with_kernels(params: dict, kernels: dict) -> dict:
  """`params` with each layer's kernel replaced by the one in `kernels`."""
  flat = traverse_util.flatten_dict(params, sep='/')
  flat.update({f'{layer}/kernel': w for layer, w in kernels.items()})
  return traverse_util.unflatten_dict(flat, sep='/')


def create_optimizer(config, total_steps: int) -> tuple[optax.GradientTransformation, Any]:
  """The optimizer and its learning-rate schedule (a function of the step)."""
  decay_steps = max(total_steps - config.warmup_steps, 1)
  if config.lr_schedule == 'cosine':
    schedule = optax.cosine_decay_schedule(config.learning_rate, decay_steps)
  else:
    schedule = optax.constant_schedule(config.learning_rate)
  if config.warmup_steps:
    warmup = optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)
    schedule = optax.join_schedules([warmup, schedule], [config.warmup_steps])
  kernels_only = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)
  if config.optimizer == 'adam':
    tx = optax.adamw(schedule, weight_decay=config.weight_decay, mask=kernels_only)
  else:
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay, mask=kernels_only),
        optax.sgd(schedule, momentum=config.momentum or None),
    )
  if config.batch_manhattan:
    tx = optax.chain(optax.scale_by_sign(), tx)
  return tx, schedule


def create_train_state(
    config, spec: datasets.Spec, optimizer, method: methods.Method, mesh=None
) -> tuple[Model, TrainState]:
  """The model's structure and its initial state, created inside `jax.jit`.

  Creating the state under jit gives every leaf its own buffer (B = W for BP is a copy, not an
  alias of W), so the train step can donate the whole state. On a `mesh`, the state is created
  already laid out as `sharding.state_shardings` says, with no copy on one device first.
  """

  def split(network):
    graphdef, params, feedback, error_feedback, model_state = nnx.split(
        network, nnx.Param, Feedback, ErrorFeedback, ...
    )
    flat_feedback = traverse_util.flatten_dict(nnx.to_pure_dict(feedback))
    feedback = {'/'.join(k[:-1]): b for k, b in flat_feedback.items()}
    pure = nnx.to_pure_dict
    return graphdef, pure(params), feedback, pure(error_feedback), pure(model_state)

  def build_network(direct_mode=method.direct_mode):
    params_key, feedback_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
    return models.create(
        config.model,
        spec.num_classes,
        spec.input_shape,
        config.kernel_init,
        nnx.Rngs(params=params_key, feedback=feedback_key, dropout=dropout_key),
        direct_mode=direct_mode,
        direct_memory_budget_mb=config.direct_feedback_memory_budget_mb,
    )

  def init():
    _, params, feedback, error_feedback, model_state = split(build_network())
    kernels = layer_kernels(params, feedback)
    constraint_state = method.constraint.init(kernels)
    rule_state = method.rule.init(kernels)
    feedback, rule_state = method.rule.update(feedback, rule_state, kernels)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        feedback=feedback,
        error_feedback=error_feedback,
        model_state=model_state,
        opt_state=optimizer.init(params),
        rule_state=rule_state,
        constraint_state=constraint_state,
    )

  graphdef, *_ = split(nnx.eval_shape(build_network))
  exact_network = nnx.eval_shape(lambda: build_network(direct.ADJACENT))
  exact_graphdef, *_ = split(exact_network)
  hidden_shapes = tuple(direct.activation_shapes(exact_network, spec.input_shape))
  model = Model(graphdef, exact_graphdef, hidden_shapes, spec.preprocess,
                jnp.dtype(config.compute_dtype))
  out_shardings = None
  if mesh is not None:
    out_shardings = sharding.state_shardings(
        mesh, jax.eval_shape(init), config.shard_large_params
    )
  return model, jax.jit(init, out_shardings=out_shardings)()


def _loss_and_error(logits, labels):
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  wrong = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return loss, wrong


def _after(new_tree: Any, old_tree: Any, dependencies: Any) -> Any:
  """`new_tree`'s changed leaves, bit for bit, as values XLA computes after `dependencies`.

  The step writes each new B into the donated buffer of the old one. XLA on CPU does that in
  place only when the new value depends on every read of the old one (the backward pass); it
  ignores `lax.optimization_barrier` for this (openxla/xla#20440) and otherwise copies each B
  in and out, two passes over every feedback tensor per step. One element of each dependency
  feeds a predicate that is always false but that XLA cannot fold.
  """
  probe = sum(leaf.ravel()[0].astype(jnp.float32) for leaf in jax.tree.leaves(dependencies))
  never = (probe != probe) & (probe == probe)
  order = lambda new, old: new if new is old else jnp.where(never, 0, new)
  return jax.tree.map(order, new_tree, old_tree)


def train_step(
    state: TrainState,
    images: jax.Array,
    labels: jax.Array,
    *,
    model: Model,
    optimizer: optax.GradientTransformation,
    method: methods.Method,
    diagnose: bool = False,
) -> tuple[TrainState, dict]:
  """One optimizer step on W and biases, the constraint on W, then the rule's update of B.

  With `diagnose`, also measures every layer's alignment with exact BP on this batch
  (`fajax.diagnostics`); the step's result is the same either way.
  """
  probes = {}
  if diagnose:
    probes = {layer: jnp.zeros((images.shape[0], *shape), model.compute_dtype)
              for layer, shape in model.hidden_shapes}

  def loss_fn(params, probes, exact=False):
    forward_finite = []
    with direct.probing(probes if diagnose else None, forward_finite):
      logits, model_state = model.apply(state, params, images, train=True, exact=exact)
    loss, wrong = _loss_and_error(logits, labels)
    return loss.mean(), (wrong.mean(), model_state, forward_finite)

  (loss, (error, model_state, forward_finite)), (grads, deltas) = jax.value_and_grad(
      loss_fn, argnums=(0, 1), has_aux=True
  )(state.params, probes)
  metrics = {'train/loss': loss, 'train/top1_error': 100.0 * error}
  if diagnose:
    exact_grads, exact_deltas = jax.grad(
        lambda p, d: loss_fn(p, d, exact=True)[0], argnums=(0, 1)
    )(state.params, probes)
    metrics.update(diagnostics.weight_alignment(
        layer_kernels(state.params, state.feedback), state.feedback))
    metrics.update(diagnostics.signal_alignment(
        layer_kernels(grads, state.feedback), layer_kernels(exact_grads, state.feedback),
        deltas, exact_deltas))

  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  kernels = method.constraint.apply(
      layer_kernels(params, state.feedback), state.constraint_state
  )
  feedback, rule_state = method.rule.update(
      state.feedback, state.rule_state, kernels, layer_kernels(grads, state.feedback)
  )
  feedback = _after(feedback, state.feedback, (grads, metrics))
  metrics['health'] = diagnostics.first_nonfinite(
      forward_finite, loss, layer_kernels(grads, state.feedback), kernels, feedback)
  new_state = state.replace(
      step=state.step + 1,
      params=with_kernels(params, kernels),
      feedback=feedback,
      model_state=model_state,
      opt_state=opt_state,
      rule_state=rule_state,
  )
  return new_state, metrics


def train_steps(state: TrainState, images: jax.Array, labels: jax.Array, **step_args):
  """`train_step` on each batch of a stack (leading axis: the step), in turn, in one `lax.scan`.

  The metrics come stacked the same way.
  """
  return jax.lax.scan(
      lambda state, batch: train_step(state, *batch, **step_args), state, (images, labels)
  )


def jit_train_step(
    model, optimizer, method, *, diagnose=False, stacked=False, out_shardings=None
):
  """`train_step` jitted as the trainer runs it (and the benchmarks time it).

  `stacked`: `train_steps` instead, several steps in one call.
  """
  return jax.jit(
      functools.partial(train_steps if stacked else train_step, model=model,
                        optimizer=optimizer, method=method, diagnose=diagnose),
      out_shardings=out_shardings,
      donate_argnums=0,
  )


def eval_step(state: TrainState, images, labels, mask, *, model: Model) -> dict:
  """Sums of loss and errors over the examples where `mask` is 1 (padding is 0)."""
  logits, _ = model.apply(state, state.params, images, train=False)
  loss, wrong = _loss_and_error(logits, labels)
  return {'loss': jnp.sum(loss * mask), 'errors': jnp.sum(wrong * mask), 'count': jnp.sum(mask)}


def evaluate(eval_fn, state, batches) -> dict:
  """Loss and top-1 error (%) over the (images, labels, mask) batches of a whole split."""
  totals = jax.device_get([eval_fn(state, *batch) for batch in batches])
  count = sum(t['count'] for t in totals)
  return {
      'eval/loss': float(sum(t['loss'] for t in totals) / count),
      'eval/top1_error': float(100.0 * sum(t['errors'] for t in totals) / count),
  }


class MetricsLog:
  """`metrics.jsonl` (one JSON object per line, each with its "step") and TensorBoard events.

  The events go to `<workdir>/tensorboard` through tensorboardX, without TensorFlow.
  """

  def __init__(self, workdir: str | None):
    self.path = os.path.join(workdir, 'metrics.jsonl') if workdir else None
    self.tensorboard = None
    if workdir:
      import tensorboardX  # pylint: disable=g-import-not-at-top

      self.tensorboard = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def truncate_after(self, step: int) -> None:
    """Drops lines a killed run wrote past its last checkpoint, which a resume will redo."""
    if not self.path or not os.path.exists(self.path):
      return
    with open(self.path) as f:
      kept = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
    with open(self.path, 'w') as f:
      f.writelines(kept)

  def write(self, step: int, metrics: dict) -> None:
    if self.path:
      with open(self.path, 'a') as f:
        f.write(json.dumps({'step': step, **metrics}) + '\n')
      for key, value in metrics.items():
        self.tensorboard.add_scalar(key, value, step)
      self.tensorboard.flush()

  def close(self) -> None:
    if self.tensorboard:
      self.tensorboard.close()


def restore_latest_readable(checkpoints, state: TrainState, say) -> TrainState:
  """The newest checkpoint that restores; damaged ones are skipped with a warning.

  The state is restored onto this run's devices and layout (`state`'s shardings), whatever the
  saving run's were.
  """
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
  )
  for step in sorted(checkpoints.all_steps(), reverse=True):
    try:
      return checkpoints.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except  # Orbax raises many kinds.
      say(f'warning: the checkpoint at step {step} cannot be read ({type(e).__name__}); '
          'trying the one before it')
  raise CheckpointError(
      f'no checkpoint in {checkpoints.directory} can be read; move that folder away to start '
      'the run afresh'
  )


def check_health(codes, first_step: int, checks: list[str], checkpoints) -> None:
  """Raises DivergenceError at the first step where a value of `checks` went non-finite."""
  for offset, code in enumerate(codes):
    if code >= 0:
      kept = checkpoints.latest_step() if checkpoints else None
      raise DivergenceError(
          f'training diverged at step {first_step + offset}: NaN or Inf in '
          f'{checks[int(code)]}; '
          + (f'the last good checkpoint (step {kept}) is kept. ' if kept is not None else '')
          + 'Lower the learning rate or check the data, then run again.'
      )


def steps_in_next_call(step: int, stop: int, steps_per_call: int, diagnose_at_stop: bool) -> int:
  """How many steps the trainer's next call runs, from `step` towards the next `stop`.

  A stack of `steps_per_call` when that many fit before the stop, else one. The step that ends
  at a diagnosed stop always runs alone (its own jitted step, which measures the alignment). So
  training compiles three step functions at most (single, diagnosed, stacked), whatever the
  schedule of stops.
  """
  if steps_per_call > 1 and step + steps_per_call <= stop - diagnose_at_stop:
    return steps_per_call
  return 1


def _fetch_per_step(per_call: list[dict]) -> dict:
  """Metrics of several calls (scalars of one step or stacks of several) as one array a key."""
  fetched = jax.device_get(per_call)
  return {k: np.concatenate([np.atleast_1d(m[k]) for m in fetched]) for k in fetched[0]}


def _stack(batches):
  stack = np.stack if isinstance(batches[0], np.ndarray) else jnp.stack
  return stack(batches)


def _format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes // 60}:{minutes % 60:02d}:{seconds:02d}'


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | None) -> dict:
  """Trains and evaluates the model of `config`; returns the final metrics.

  With a workdir, writes config.json, metrics.jsonl and checkpoints there, and resumes from the
  latest checkpoint when one exists.
  """
  validate_config(config)
  host_memory.retain_freed_buffers()
  mesh = sharding.make_mesh()
  sharding.check_batch_sizes(config, mesh)
  data = datasets.load(config)
  if data.num_train < config.batch_size:
    raise ConfigError(
        f'batch_size {config.batch_size} is larger than the {data.num_train} training examples'
    )
  steps_per_epoch = data.num_train // config.batch_size
  total_steps = (
      config.num_train_steps if config.num_train_steps > 0
      else config.num_epochs * steps_per_epoch
  )

  optimizer, schedule = create_optimizer(config, total_steps)
  method = methods.build(config, optimizer)
  model, state = create_train_state(config, data.spec, optimizer, method, mesh)
  state_shardings = jax.tree.map(lambda x: x.sharding, state)

  # Every process trains; process 0 alone writes the log and prints.
  is_main = jax.process_index() == 0
  say = functools.partial(print, flush=True) if is_main else lambda *args, **kwargs: None
  checkpoints = None
  log = MetricsLog(workdir if is_main else None)
  if workdir:
    if is_main:
      os.makedirs(workdir, exist_ok=True)
      with open(os.path.join(workdir, 'config.json'), 'w') as f:
        f.write(config.to_json_best_effort(indent=2))
    checkpoints = ocp.CheckpointManager(
        os.path.join(os.path.abspath(workdir), 'checkpoints'),
        options=ocp.CheckpointManagerOptions(max_to_keep=config.checkpoints_to_keep),
    )
    if checkpoints.all_steps():
      state = restore_latest_readable(checkpoints, state, say)
      log.truncate_after(int(state.step))
      say(f'Resumed from the checkpoint at step {int(state.step)} in {workdir}')

  replicated = sharding.replicated(mesh)
  batch_sharding = sharding.batch_sharding(mesh)
  stacked_batch_sharding = sharding.batch_sharding(mesh, stacked=True)
  step_fns = {
      diagnose: jit_train_step(model, optimizer, method, diagnose=diagnose,
                               out_shardings=(state_shardings, replicated))
      for diagnose in (False, True)
  }
  stacked_step_fn = jit_train_step(model, optimizer, method, stacked=True,
                                   out_shardings=(state_shardings, replicated))
  eval_fn = jax.jit(functools.partial(eval_step, model=model), out_shardings=replicated)
  eval_slice = sharding.process_slice(config.eval_batch_size)

  def eval_batches():
    for batch in data.eval_batches(config.eval_batch_size):
      yield tuple(sharding.global_array(x[eval_slice], batch_sharding) for x in batch)

  health_checks = diagnostics.health_checks([l for l, _ in model.hidden_shapes], state.feedback)
  try:
    step = int(state.step)
    batches = data.train_batches(
        config.batch_size, config.seed, start_step=step, num_steps=total_steps - step,
        shard_index=jax.process_index(), shard_count=jax.process_count(),
    )
    eval_every = steps_per_epoch * config.eval_every_epochs
    # Steps after which something is logged, evaluated or saved: "stops".
    stop_intervals = [config.log_every_steps, eval_every, total_steps] + (
        [config.checkpoint_every_steps] if checkpoints else [])
    pending = []  # per call: its steps' loss, error and health, stacked
    interval_start, interval_step = time.perf_counter(), step
    eval_metrics = {}
    while step < total_steps:
      # The next stop; the calls before it may run stacked.
      stop = min((step // every + 1) * every for every in stop_intervals)
      log_due = stop % config.log_every_steps == 0 or stop == total_steps
      # The last step of each logging interval also measures the layers' alignment.
      diagnose_at_stop = log_due and config.diagnostics
      count = steps_in_next_call(step, stop, config.steps_per_call, diagnose_at_stop)
      if count == 1:
        images, labels = next(batches)
        state, metrics = step_fns[diagnose_at_stop and step + 1 == stop](
            state, sharding.global_array(images, batch_sharding),
            sharding.global_array(labels, batch_sharding))
      else:
        images, labels = zip(*(next(batches) for _ in range(count)))
        state, metrics = stacked_step_fn(
            state, sharding.global_array(_stack(images), stacked_batch_sharding),
            sharding.global_array(_stack(labels), stacked_batch_sharding))
      pending.append({k: metrics[k] for k in ('train/loss', 'train/top1_error', 'health')})
      step += count
      if step < stop:
        continue
      checkpoint_due = checkpoints and (
          step % config.checkpoint_every_steps == 0 or step == total_steps)

      if log_due or checkpoint_due:  # never log or save a diverged state
        pending = [_fetch_per_step(pending)]
        health = pending[0]['health']
        check_health(health, step - len(health) + 1, health_checks, checkpoints)
      line = {}
      if log_due:
        means = {k: float(np.mean(pending[0][k])) for k in ('train/loss', 'train/top1_error')}
        pending = []
        alignment = {k: float(v) for k, v in jax.device_get(metrics).items()
                     if k.startswith('align/')}
        line.update(means, **alignment, **{'train/learning_rate': float(schedule(step - 1))})
        now = time.perf_counter()
        rate = (step - interval_step) / (now - interval_start)
        interval_start, interval_step = now, step
        say(
            f'step {step}/{total_steps} | {rate:.1f} steps/s | '
            f'ETA {_format_duration((total_steps - step) / rate)} | '
            f"loss {means['train/loss']:.4f} | error {means['train/top1_error']:.2f}%"
        )
      eval_due = step % eval_every == 0
      if eval_due or step == total_steps:
        eval_metrics = evaluate(eval_fn, state, eval_batches())
        line.update(eval_metrics)
        say(
            f"step {step}/{total_steps} | eval loss {eval_metrics['eval/loss']:.4f} | "
            f"eval error {eval_metrics['eval/top1_error']:.2f}%"
        )
      if line:
        log.write(step, line)
      if checkpoint_due:
        checkpoints.save(step, args=ocp.args.StandardSave(state))

    if not eval_metrics:  # resumed after the last step: nothing trained, report the result
      eval_metrics = evaluate(eval_fn, state, eval_batches())
  finally:  # also when stopping on an error: finish writing, never leave a half checkpoint
    log.close()
    if checkpoints:
      checkpoints.wait_until_finished()
      checkpoints.close()
  return {'step': step, **eval_metrics}
