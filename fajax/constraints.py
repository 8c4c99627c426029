"""Forward-weight constraints: projections applied to W after every optimizer update.

Like feedback rules, a constraint is a pair of pure functions over the tree of layer kernels
(biases and normalization parameters are never in it, so they stay free):

    state = constraint.init(weights)
    weights = constraint.apply(weights, state)

Constraints compose with `chain` and combine with any feedback rule; the trainer applies them
before the rule's update, so B is always built from the constrained W.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from fajax.errors import ConfigError
from fajax.rules import frobenius_norm

PyTree = Any
SIGN_FLOOR = 1e-10
# How E/I treats a weight that an update would carry across zero.
SIGN_CROSSINGS = ('floor', 'reflect')


class WeightConstraint(NamedTuple):
  init: Callable[[PyTree], PyTree]
  apply: Callable[[PyTree, PyTree], PyTree]


class SignState(NamedTuple):
  positive: PyTree  # W_0 ≥ 0, as booleans: a quarter of the memory traffic of ±1 floats


def fixed_signs(floor: float = SIGN_FLOOR, crossing: str = 'floor',
                free_layers: tuple[str, ...] = ()) -> WeightConstraint:
  """E/I: no weight of a constrained layer ever changes sign; s = sign(W_0) (+1 where W_0 is 0).

  `crossing` 'floor': W ← s·max(s·W, ε), so a weight pushed across zero stops at ±ε;
  'reflect': W ← s·|W|, so it bounces back by as much as it overshot and stays in use. Layers
  named in `free_layers` (keys of the kernel dict) are left unconstrained.
  """
  if crossing not in SIGN_CROSSINGS:
    raise ConfigError(f"unknown sign_crossing '{crossing}'; choose one of: "
                      f"{', '.join(SIGN_CROSSINGS)}")

  def project(w, positive):
    if crossing == 'reflect':
      return jnp.where(positive, jnp.abs(w), -jnp.abs(w))
    return jnp.where(positive, jnp.maximum(w, floor), jnp.minimum(w, -floor))

  def init(weights):
    unknown = sorted(set(free_layers) - set(weights))
    if unknown:
      raise ConfigError(f"sign_free_layers names {', '.join(unknown)}, not a layer of the model; "
                        f"its layers: {', '.join(sorted(weights))}")
    return SignState({layer: w >= 0 for layer, w in weights.items() if layer not in free_layers})

  def apply(weights, state):
    return {layer: project(w, state.positive[layer]) if layer in state.positive else w
            for layer, w in weights.items()}

  return WeightConstraint(init, apply)


class NormState(NamedTuple):
  initial_norms: PyTree


def fixed_norm(per_output: bool = False) -> WeightConstraint:
  """Const.: W ← W·‖W_0‖/‖W‖ per layer tensor (or per output filter)."""

  def init(weights):
    return NormState(jax.tree.map(lambda w: frobenius_norm(w, per_output), weights))

  def apply(weights, state):
    def project(w, target):
      norm = frobenius_norm(w, per_output)
      return w * target / jnp.where(norm > 0, norm, 1)

    return jax.tree.map(project, weights, state.initial_norms)

  return WeightConstraint(init, apply)


def chain(*constraints: WeightConstraint) -> WeightConstraint:
  """Applies `constraints` in order."""

  def init(weights):
    return tuple(c.init(weights) for c in constraints)

  def apply(weights, state):
    for constraint, constraint_state in zip(constraints, state):
      weights = constraint.apply(weights, constraint_state)
    return weights

  return WeightConstraint(init, apply)
