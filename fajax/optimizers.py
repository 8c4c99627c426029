"""W's optimizer and its learning-rate schedule, from the config.

Weight decay acts on kernels only (ndim > 1), never on biases and never on feedback weights B,
which no optimizer sees. SGD couples it (added to the gradient before momentum, as PyTorch's
SGD does); Adam decouples it (`optax.adamw`).
"""

from typing import Any

import jax
import optax

OPTIMIZERS = ('sgd', 'adam')
LR_SCHEDULES = ('constant', 'cosine')


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
