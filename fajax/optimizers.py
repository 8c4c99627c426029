"""W's optimizer and its learning-rate schedule, from the config.

Weight decay acts on kernels only (ndim > 1), never on biases and never on feedback weights B,
which no optimizer sees. SGD couples it (added to the gradient before momentum, as PyTorch's
SGD does); Adam decouples it (`optax.adamw`).

The peak learning rate and the weight decay are values in the optimizer's state
(`optax.inject_hyperparams`), not constants of its code: replicas with different values share
one compiled step (`set_hyperparams`).
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ('sgd', 'adam')
LR_SCHEDULES = ('constant', 'cosine')
# What `set_hyperparams` can set per replica, and so what a sweep can vary.
HYPERPARAMS = ('learning_rate', 'weight_decay')


def create_optimizer(config, total_steps: int) -> tuple[optax.GradientTransformation, Callable]:
  """The optimizer, and its learning rate as `schedule(step, peak_learning_rate)`."""
  decay_steps = max(total_steps - config.warmup_steps, 1)

  def schedule_of(learning_rate):
    if config.lr_schedule == 'cosine':
      schedule = optax.cosine_decay_schedule(learning_rate, decay_steps)
    else:
      schedule = optax.constant_schedule(learning_rate)
    if config.warmup_steps:
      warmup = optax.linear_schedule(0.0, learning_rate, config.warmup_steps)
      schedule = optax.join_schedules([warmup, schedule], [config.warmup_steps])
    return schedule

  kernels_only = lambda params: jax.tree.map(lambda p: p.ndim > 1, params)

  def make(learning_rate, weight_decay):
    schedule = schedule_of(learning_rate)
    if config.optimizer == 'adam':
      tx = optax.adamw(schedule, weight_decay=weight_decay, mask=kernels_only)
    else:
      tx = optax.chain(
          optax.add_decayed_weights(weight_decay, mask=kernels_only),
          optax.sgd(schedule, momentum=config.momentum or None),
      )
    if config.batch_manhattan:
      tx = optax.chain(optax.scale_by_sign(), tx)
    return tx

  tx = optax.inject_hyperparams(make)(
      learning_rate=config.learning_rate, weight_decay=config.weight_decay)
  return tx, lambda step, learning_rate: schedule_of(learning_rate)(step)


def set_hyperparams(tree: Any, values: dict) -> Any:
  """`tree` (a train state, an optimizer state) with every optimizer's hyper-parameters that
  `values` names set to its values: W's optimizer, and the copy of it Kolen–Pollack runs on B."""
  is_injected = lambda x: isinstance(x, optax.InjectStatefulHyperparamsState)

  def set_in(x):
    if not is_injected(x):
      return x
    hyperparams = dict(x.hyperparams)
    hyperparams.update({k: jnp.asarray(v, hyperparams[k].dtype) for k, v in values.items()})
    return x._replace(hyperparams=hyperparams)

  return jax.tree.map(set_in, tree, is_leaf=is_injected)
