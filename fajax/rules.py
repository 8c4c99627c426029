"""Feedback rules: optax-style pairs of pure functions that set the feedback weights B.

A rule is `FeedbackRule(init, update)`:

    state = rule.init(weights)
    feedback, state = rule.update(feedback, state, weights, weight_grads)

`weights`, `feedback` and `weight_grads` are pytrees of the same structure, one leaf per
feedback layer (W, B and the loss gradient dW of that layer). The trainer calls `update` once
when the model is built (with `weight_grads=None`) and again after every optimizer step, so a
rule always sees the current W. Rules compose with `chain`, each one transforming the B its
predecessor produced, like optax's gradient transforms:

    uSF with the Init. scale = chain(sign_of_weights(), scale_to_initial_norm())

A rule that keeps per-run data (the initial norms, a random key) keeps it in its state, so
everything is explicit, checkpointable and safe under `jax.jit`.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fajax import threefry
from fajax.errors import ConfigError

PyTree = Any


class FeedbackRule(NamedTuple):
  init: Callable[[PyTree], PyTree]
  update: Callable[..., tuple[PyTree, PyTree]]


class EmptyState(NamedTuple):
  """State of a rule that needs none."""


def _stateless(transform: Callable[[jax.Array, jax.Array], jax.Array]) -> FeedbackRule:
  """A rule that maps each layer's (B, W) to its new B."""

  def init(weights):
    del weights
    return EmptyState()

  def update(feedback, state, weights, weight_grads=None):
    del weight_grads
    return jax.tree.map(transform, feedback, weights), state

  return FeedbackRule(init, update)


def fixed() -> FeedbackRule:
  """Leaves B as it is. On the layers' own initial draw this is feedback alignment (FA)."""
  return _stateless(lambda b, w: b)


def copy_weights() -> FeedbackRule:
  """B = W: exact backpropagation."""
  return _stateless(lambda b, w: w)


def copy_weights_of(layers: tuple[str, ...]) -> FeedbackRule:
  """B = W on the named layers only, so the error passes them exactly; other layers keep B.

  Chained after a method's rule it makes those layers backprop (e.g. the output layer: the
  "exact last layer" of Xiao et al. 2018). Raises ConfigError for a name that is not a layer.
  """

  def init(weights):
    unknown = sorted(set(layers) - set(weights))
    if unknown:
      raise ConfigError(f"exact_layers names {', '.join(unknown)}, not a feedback layer of the "
                        f"model; its layers: {', '.join(sorted(weights))}")
    return EmptyState()

  def update(feedback, state, weights, weight_grads=None):
    del weight_grads
    return {layer: weights[layer] if layer in layers else b for layer, b in feedback.items()}, state

  return FeedbackRule(init, update)


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

  def update(feedback, state, weights, weight_grads=None):
    del weights, weight_grads
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

  def update(feedback, state, weights, weight_grads=None):
    new_state = []
    for rule, rule_state in zip(rules, state):
      feedback, rule_state = rule.update(feedback, rule_state, weights, weight_grads)
      new_state.append(rule_state)
    return feedback, tuple(new_state)

  return FeedbackRule(init, update)


def _rms(x: jax.Array) -> jax.Array:
  return jnp.sqrt(jnp.mean(jnp.square(x)))


def _split_like(key: jax.Array, tree: PyTree) -> PyTree:
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


class KeyState(NamedTuple):
  key: jax.Array


def add_weight_scaled_noise(sigma: float, seed: int) -> FeedbackRule:
  """B ← B + σ·rms(W)·ξ, ξ ~ N(0, 1) drawn fresh at every update (BP + Noise after copy_weights).

  For B = W + noise the W–B angle is arctan(σ): σ = 0.75 gives the 37° of uSF.
  """

  def init(weights):
    del weights
    return KeyState(jax.random.key(seed))

  def update(feedback, state, weights, weight_grads=None):
    del weight_grads
    key, draw_key = jax.random.split(state.key)
    keys = _split_like(draw_key, feedback)
    noisy = lambda b, w, k: b + sigma * _rms(w) * threefry.normal(k, b.shape, b.dtype)
    return jax.tree.map(noisy, feedback, weights, keys), KeyState(key)

  return FeedbackRule(init, update)


class MagnitudeState(NamedTuple):
  magnitudes: PyTree  # |M| of each layer; None where M is redrawn at every update
  scales: PyTree  # rms(W_0) of each layer: the standard deviation of M
  key: jax.Array


def random_magnitude_signs(redraw: bool, seed: int) -> FeedbackRule:
  """B = |M|∘sign(W), M ~ N(0, rms(W_0)²) (Liao et al. 2016).

  `redraw=True` draws M afresh at every update (brSF); `redraw=False` keeps the first draw (frSF).
  brSF keeps no M in its state: storing it would make XLA compute the draw twice, once per
  consumer (1.9× the rule's time on ResNet-18).
  """

  def draw(key, scales, like):
    keys = _split_like(key, like)
    return jax.tree.map(
        lambda k, s, w: jnp.abs(s * threefry.normal(k, w.shape, w.dtype)), keys, scales, like
    )

  def init(weights):
    key, draw_key = jax.random.split(jax.random.key(seed))
    scales = jax.tree.map(_rms, weights)
    return MagnitudeState(None if redraw else draw(draw_key, scales, weights), scales, key)

  def update(feedback, state, weights, weight_grads=None):
    del feedback, weight_grads
    magnitudes = state.magnitudes
    if redraw:
      key, draw_key = jax.random.split(state.key)
      magnitudes = draw(draw_key, state.scales, weights)
      state = state._replace(key=key)
    feedback = jax.tree.map(lambda m, w: m * jnp.sign(w), magnitudes, weights)
    return feedback, state

  return FeedbackRule(init, update)


class KolenPollackState(NamedTuple):
  optimizer_state: PyTree


def kolen_pollack(optimizer) -> FeedbackRule:
  """B takes the same update as W: the optimizer step of W's gradient, with its own decay of B.

  With `optimizer` the one that updates W (weight decay λ included), W − B follows the
  optimizer on the loss λ/2·‖W − B‖², so it shrinks geometrically (Akrout et al. 2019).
  """

  def init(weights):
    return KolenPollackState(optimizer.init(weights))

  def update(feedback, state, weights, weight_grads=None):
    del weights
    if weight_grads is None:  # the initial call: B keeps its random start
      return feedback, state
    updates, optimizer_state = optimizer.update(weight_grads, state.optimizer_state, feedback)
    feedback = jax.tree.map(lambda b, u: b + u, feedback, updates)
    return feedback, KolenPollackState(optimizer_state)

  return FeedbackRule(init, update)


def weight_mirror(
    learning_rate: float, decay: float, noise_std: float, num_samples: int, seed: int
) -> FeedbackRule:
  """B learns W from the correlation of noise sent through the layer (Akrout et al. 2019).

  Each update draws ξ ~ N(0, noise_std²) at the layer's input (a kernel-sized patch for a conv,
  where the layer is a dense map of the flattened patch), sends it through W, y = ξ·W, and
  moves B ← B + η·(ξᵀy / (N·noise_std²) − λ·B). Since E[ξᵀy] = N·noise_std²·W, B turns
  towards W.
  """

  def init(weights):
    del weights
    return KeyState(jax.random.key(seed))

  def mirror(b, w, key):
    fan_in = w.size // w.shape[-1]
    matrix = w.reshape(fan_in, w.shape[-1])
    xi = noise_std * threefry.normal(key, (num_samples, fan_in), w.dtype)
    correlation = (xi.T @ (xi @ matrix)) / (num_samples * noise_std**2)
    return b + learning_rate * (correlation.reshape(w.shape) - decay * b)

  def update(feedback, state, weights, weight_grads=None):
    del weight_grads
    key, draw_key = jax.random.split(state.key)
    keys = _split_like(draw_key, feedback)
    return jax.tree.map(mirror, feedback, weights, keys), KeyState(key)

  return FeedbackRule(init, update)
