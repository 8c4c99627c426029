"""Per-layer alignment diagnostics, computed on the device inside the train step.

For every feedback layer:
- `align/<layer>/angle_wb_deg`: angle between W and B (flattened); for B = c·sign(W) it is
  arccos(mean|w|/rms(w)), about 37° for Gaussian W;
- `align/<layer>/norm_ratio`: ‖B‖/‖W‖;
- `align/<layer>/angle_update_deg`: angle between the rule's weight gradient and exact BP's on
  the same batch;
and for every hidden layer (named as the model's `path.activate` calls name it):
- `align/<layer>/angle_delta_deg`: angle between the backward signal δ the rule delivers to the
  layer's output and the one exact BP delivers, on the same batch.
"""

import jax
import jax.numpy as jnp
from jax import lax


def angle_deg(a: jax.Array, b: jax.Array) -> jax.Array:
  """Angle between two tensors, flattened, in degrees (0 where either is zero)."""
  a, b = a.ravel().astype(jnp.float32), b.ravel().astype(jnp.float32)
  norms = jnp.linalg.norm(a) * jnp.linalg.norm(b)
  cosine = jnp.where(norms > 0, jnp.vdot(a, b) / jnp.where(norms > 0, norms, 1), 1.0)
  return jnp.degrees(jnp.arccos(jnp.clip(cosine, -1.0, 1.0)))


def weight_alignment(kernels: dict, feedback: dict) -> dict:
  metrics = {}
  for layer, w in kernels.items():
    b = feedback[layer]
    metrics[f'align/{layer}/angle_wb_deg'] = angle_deg(w, b)
    metrics[f'align/{layer}/norm_ratio'] = jnp.linalg.norm(b) / jnp.linalg.norm(w)
  return metrics


def signal_alignment(rule_grads: dict, bp_grads: dict, rule_deltas: dict, bp_deltas: dict) -> dict:
  metrics = {f'align/{layer}/angle_update_deg': angle_deg(g, bp_grads[layer])
             for layer, g in rule_grads.items()}
  metrics.update({f'align/{layer}/angle_delta_deg': angle_deg(d, bp_deltas[layer])
                  for layer, d in rule_deltas.items()})
  return metrics


def all_finite(x: jax.Array) -> jax.Array:
  """Whether no entry of `x` is NaN or ±Inf.

  A sum is finite when every entry is, and XLA fuses it into the pass that produces x, where
  `jnp.all(jnp.isfinite(x))` costs a pass of its own (BUILD_NOTES: 10–15% of a ResNet-18
  step). Only a non-finite sum, which finite entries can also reach by overflow, pays for the
  exact check.
  """
  return lax.cond(jnp.isfinite(jnp.sum(x)), lambda: jnp.array(True),
                  lambda: jnp.all(jnp.isfinite(x)))


def health_checks(hidden_layers, layers) -> list[str]:
  """What `first_nonfinite` checks, in order: the forward pass layer by layer, the loss, then
  each layer's dW, W and B."""
  return ([f'the output of {layer}' for layer in hidden_layers] + ['the logits', 'the loss']
          + [f'the gradient of {layer}' for layer in layers]
          + [f'the weights of {layer}' for layer in layers]
          + [f'the feedback weights of {layer}' for layer in layers])


def first_nonfinite(forward_finite: list, loss, grads: dict, kernels: dict,
                    feedback: dict) -> jax.Array:
  """Index into `health_checks` of the first check holding NaN or Inf, else -1.

  `forward_finite` holds whether each hidden pre-activation and the logits were finite.
  """
  tensors = [loss] + [grads[l] for l in feedback] + [kernels[l] for l in feedback] + list(
      feedback.values())
  finite = jnp.stack([*forward_finite, *(all_finite(t) for t in tensors)])
  return jnp.where(jnp.all(finite), -1, jnp.argmin(finite))
