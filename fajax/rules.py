"""Feedback rules: optax-style pairs of pure functions that set the feedback weights B.

A rule is `FeedbackRule(init, update)`:

    state = rule.init(weights)
    feedback, state = rule.update(feedback, state, weights)

`weights` and `feedback` are pytrees of the same structure, one leaf per feedback layer (W and
B of that layer). The trainer calls `update` once when the model is built and again after
every optimizer step, so a rule always sees the current W. Rules compose with `chain`, each
one transforming the B its predecessor produced, like optax's gradient transforms:

    uSF with the Init. scale = chain(sign_of_weights(), scale_to_initial_norm())

A rule that keeps per-run data (the initial norms, a random key) keeps it in its state, so
everything is explicit, checkpointable and safe under `jax.jit`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

PyTree = Any


class FeedbackRule(NamedTuple):
  init: Callable[[PyTree], PyTree]
  update: Callable[[PyTree, PyTree, PyTree], tuple[PyTree, PyTree]]


class EmptyState(NamedTuple):
  """State of a rule that needs none."""


def _stateless(transform: Callable[[jax.Array, jax.Array], jax.Array]) -> FeedbackRule:
  """A rule that maps each layer's (B, W) to its new B."""

  def init(weights):
    del weights
    return EmptyState()

  def update(feedback, state, weights):
    return jax.tree.map(transform, feedback, weights), state

  return FeedbackRule(init, update)


def fixed() -> FeedbackRule:
  """Leaves B as it is. On the layers' own initial draw this is feedback alignment (FA)."""
  return _stateless(lambda b, w: b)


def copy_weights() -> FeedbackRule:
  """B = W: exact backpropagation."""
  return _stateless(lambda b, w: w)


def sign_of_weights() -> FeedbackRule:
  """B = sign(W): sign-concordant feedback of unit magnitude (scale it with a norm rule)."""
  return _stateless(lambda b, w: jnp.sign(w).astype(b.dtype))


def frobenius_norm(x: jax.Array, per_output: bool = False) -> jax.Array:
  """‖x‖ over the whole tensor, or per output unit (all axes but the last) when `per_output`."""
  axes = tuple(range(x.ndim - 1)) if per_output else None
  return jnp.sqrt(jnp.sum(jnp.square(x), axis=axes, keepdims=per_output))


def _rescale(b: jax.Array, target_norm: jax.Array, per_output: bool) -> jax.Array:
  norm = frobenius_norm(b, per_output)
  return b * jnp.where(norm > 0, target_norm / jnp.where(norm > 0, norm, 1), 0)


class InitialNormState(NamedTuple):
  initial_norms: PyTree


def scale_to_initial_norm(per_output: bool = False) -> FeedbackRule:
  """Rescales B to ‖W_0‖, the norm W had when the rule was initialized (the "Init." scale)."""

  def init(weights):
    return InitialNormState(jax.tree.map(lambda w: frobenius_norm(w, per_output), weights))

  def update(feedback, state, weights):
    del weights
    rescale = lambda b, n: _rescale(b, n, per_output)
    return jax.tree.map(rescale, feedback, state.initial_norms), state

  return FeedbackRule(init, update)


def scale_to_weight_norm(per_output: bool = False) -> FeedbackRule:
  """Rescales B to ‖W_t‖, the current norm of W (the "SN" scale)."""
  return _stateless(lambda b, w: _rescale(b, frobenius_norm(w, per_output), per_output))


def chain(*rules: FeedbackRule) -> FeedbackRule:
  """Applies `rules` in order, each to the B the previous one produced."""

  def init(weights):
    return tuple(rule.init(weights) for rule in rules)

  def update(feedback, state, weights):
    new_state = []
    for rule, rule_state in zip(rules, state):
      feedback, rule_state = rule.update(feedback, rule_state, weights)
      new_state.append(rule_state)
    return feedback, tuple(new_state)

  return FeedbackRule(init, update)
