"""The pure step functions: one training step, several in a scan, and an evaluation step,
for one model and for every replica at once.

    state, metrics = train_step(state, images, labels, model=..., optimizer=..., method=...)
    states, metrics = train_replicas(states, images, labels, **same)   # leading axis: replica
    states, metrics = train_replicas_stacked(states, images, labels, **same)   # [step, replica]
    sums = eval_step(state, images, labels, mask, model=...)
    sums = eval_replicas(states, images, labels, mask, model=...)

`fajax.build` jits the replica versions for a run (`Experiment`).
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from fajax import diagnostics
from fajax import methods
from fajax.train_state import Model, TrainState, layer_kernels, with_kernels


def loss_and_error(logits, labels):
  """Per-example cross-entropy and whether the top-1 prediction is wrong (1.0) or right."""
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
  (`fajax.diagnostics`); the step's result is the same either way. `metrics['health']` is the
  index of the first non-finite check (`diagnostics.health_checks`), or -1.
  """
  probes = None
  if diagnose:
    probes = {layer: jnp.zeros((images.shape[0], *shape), model.compute_dtype)
              for layer, shape in model.hidden_shapes}

  def loss_fn(params, probes, exact=False):
    forward_finite = []
    logits, model_state = model.apply(state, params, images, train=True, exact=exact,
                                      probes=probes, finite_checks=forward_finite)
    loss, wrong = loss_and_error(logits, labels)
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


def replica_step(state: TrainState, images, labels, **step_args) -> tuple[TrainState, dict]:
  """`train_step`, but a step that turns anything NaN/Inf leaves the state as it was.

  Such a replica is marked diverged (`diverged_step`, `diverged_check`) and stays frozen; only
  its step counter goes on, so every replica of a run is at the same step.
  """
  new_state, metrics = train_step(state, images, labels, **step_args)
  failed = metrics['health'] >= 0
  frozen = failed | (state.diverged_step >= 0)
  # One conditional, not a `where` per leaf: XLA compiles each `where` as a kernel of its own
  # (ResNet-18's step: 10.1 → 6.0 s at the tests' flags, 18.6 → 12.0 s at the defaults) and,
  # unoptimised, runs them as slow loops. Under vmap (several replicas) it is a select again.
  kept = jax.lax.cond(frozen, lambda: state, lambda: new_state)
  first_failure = failed & (state.diverged_step < 0)
  return kept.replace(
      step=new_state.step,
      diverged_step=jnp.where(first_failure, new_state.step, state.diverged_step),
      diverged_check=jnp.where(first_failure, metrics['health'], state.diverged_check),
  ), metrics


def _over_replicas(fn, *args, in_axes=0):
  """`jax.vmap(fn)` over the replicas; one replica runs `fn` itself on the slices, which XLA
  compiles as the plain step (a vmap of size 1 measured 5–20% slower on LeNet-5 in two runs,
  BUILD_NOTES.md "Session 6")."""
  if jax.tree.leaves(args[0])[0].shape[0] > 1:
    return jax.vmap(fn, in_axes=in_axes)(*args)
  axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
  first = lambda tree, axis: tree if axis is None else jax.tree.map(lambda x: x[0], tree)
  out = fn(*(first(arg, axis) for arg, axis in zip(args, axes)))
  return jax.tree.map(lambda x: x[None], out)


def train_replicas(states: TrainState, images: jax.Array, labels: jax.Array, **step_args):
  """`replica_step` of every replica (the leading axis of states, images and labels)."""
  return _over_replicas(functools.partial(replica_step, **step_args), states, images, labels)


def train_replicas_stacked(states: TrainState, images: jax.Array, labels: jax.Array,
                           **step_args):
  """`train_replicas` on each batch of a stack (leading axis: the step), in turn, in one
  `lax.scan`. The metrics come stacked the same way: [step, replica]."""
  return jax.lax.scan(
      lambda states, batch: train_replicas(states, *batch, **step_args), states,
      (images, labels))


def eval_step(state: TrainState, images, labels, mask, *, model: Model) -> dict:
  """Sums of loss and errors over the examples where `mask` is 1 (padding is 0)."""
  logits, _ = model.apply(state, state.params, images, train=False)
  loss, wrong = loss_and_error(logits, labels)
  return {'loss': jnp.sum(loss * mask), 'errors': jnp.sum(wrong * mask), 'count': jnp.sum(mask)}


def eval_replicas(states: TrainState, images, labels, mask, *, model: Model) -> dict:
  """`eval_step` of every replica on the same batch; sums with a leading replica axis."""
  return _over_replicas(functools.partial(eval_step, model=model), states, images, labels,
                        mask, in_axes=(0, None, None, None))
