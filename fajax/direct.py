"""Feedback that skips layers: direct (DFA, Nøkland 2016) and dense (DenseFA) feedback alignment.

A model marks each hidden layer's nonlinearity with a `Path`:

    path = self.direct.path(batch_size)
    h = path.activate('conv1', self.conv1(x), nnx.relu)     # a = pre-activation
    ...
    return path.finish(self.fc_out(h))

In mode 'adjacent' (every rule but DFA and DenseFA) `activate` is just the nonlinearity.
Otherwise `activate` replaces the error signal arriving at h = f(a) in the backward pass:

- 'output' (DFA): h receives B_l·e, with e = ∂L/∂logits and B_l a fixed random matrix;
- 'all' (DenseFA): h receives (δ_{l+1} through the layer above's own B, which is ordinary FA,
  plus Σ_{k ≥ l+2} B_{l,k}·δ_k) / √(number of sources), δ_k the signal at layer k's
  pre-activation and k = output giving DFA's term.
(`layer_sources` turns a mode into each layer's list of sources; any other list works too.)

Then δ_l = f'(a_l) ⊙ signal as usual, and the layer's weight gradient is its local one. The
signals travel in a "carrier": a dict of zeros threaded through every `activate` and added to
the logits. Its cotangent brings e down from the output, and each layer writes its δ_l into
its slot on the way back, so every layer reads what it needs within one backward pass; in DFA
no layer's update depends on the layers above it, only on e.
"""

import contextlib
import contextvars
import math
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fajax import diagnostics

MODES = ('adjacent', 'output', 'all')
ADJACENT = 'adjacent'  # the ordinary path: the layer above's cotangent, through its own B
OUTPUT = 'output'
# While set, every Path appends (layer, pre-activation shape) of each `activate` call to it.
_SHAPE_RECORD = contextvars.ContextVar('shape_record', default=None)
# While set (layer → zeros of the pre-activation's shape), `activate` adds each probe to its
# pre-activation: the gradient with respect to a probe is the backward signal δ at that layer.
_PROBES = contextvars.ContextVar('probes', default=None)
# While set, `activate` and `finish` append whether each pre-activation (and the logits) is
# finite, in forward order: where a diverging run first overflowed.
_FINITE_CHECKS = contextvars.ContextVar('finite_checks', default=None)


class ErrorFeedback(nnx.Variable):
  """Fixed random matrices that carry error signals past layers (DFA, DenseFA)."""


def layer_sources(mode: str, layers: Sequence[str]) -> dict[str, tuple[str, ...]]:
  """Where each hidden layer's error signal comes from, for a mode of `MODES`.

  'adjacent' is ordinary (feedback-alignment) backprop, 'output' DFA, 'all' DenseFA. The layer
  just below the output takes the output's error through the output layer's own B in every
  mode: for it, DFA's and DenseFA's term *is* the adjacent one.
  """
  sources = {}
  for i, layer in enumerate(layers):
    top = i == len(layers) - 1
    if mode == ADJACENT or top:
      sources[layer] = (ADJACENT,)
    elif mode == OUTPUT:
      sources[layer] = (OUTPUT,)
    else:
      sources[layer] = (ADJACENT, *layers[i + 2 :], OUTPUT)
  return sources


def matrix_name(layer: str, source: str) -> str:
  return f'{layer}_from_{source}'


def plan_matrices(
    sources: dict[str, tuple[str, ...]],
    layer_shapes: Sequence[tuple[str, tuple[int, ...]]],
    num_outputs: int,
) -> dict[str, tuple[int, int]]:
  """Name → (source size, layer size) of every long-range matrix that `sources` needs."""
  sizes = {name: math.prod(shape) for name, shape in layer_shapes}
  sizes[OUTPUT] = num_outputs
  return {
      matrix_name(layer, source): (sizes[source], sizes[layer])
      for layer, layer_sources_ in sources.items()
      for source in layer_sources_
      if source != ADJACENT
  }


def memory_bytes(plan: dict, bytes_per_entry: int = 4) -> int:
  return sum(source * layer for source, layer in plan.values()) * bytes_per_entry


def _tap(act, layer, sources, a, carrier, matrices):
  """h = act(a), carrier passed through; see `_tap_bwd` for the backward pass."""
  del layer, sources, matrices
  return act(a), carrier


def _tap_fwd(act, layer, sources, a, carrier, matrices):
  return (act(a), carrier), (a, matrices)


def _tap_bwd(act, layer, sources, residuals, cotangents):
  a, matrices = residuals
  ct_h, ct_carrier = cotangents
  batch = a.shape[0]
  terms = [
      ct_h.reshape(batch, -1) if source == ADJACENT
      else ct_carrier[source] @ matrices[matrix_name(layer, source)]
      for source in sources
  ]
  signal = sum(terms[1:], terms[0]) / math.sqrt(len(terms))
  _, act_vjp = jax.vjp(act, a)
  (delta,) = act_vjp(signal.reshape(a.shape).astype(a.dtype))
  ct_carrier = dict(ct_carrier)
  if layer in ct_carrier:  # a layer below reads this layer's δ
    ct_carrier[layer] = delta.reshape(batch, -1)
  return delta, ct_carrier, None


_tap = jax.custom_vjp(_tap, nondiff_argnums=(0, 1, 2))
_tap.defvjp(_tap_fwd, _tap_bwd)


class Path:
  """The carrier of one forward pass (see the module docstring)."""

  def __init__(self, direct: 'DirectFeedback', batch_size: int):
    self.direct = direct
    self.record = _SHAPE_RECORD.get()
    self.probes = _PROBES.get()
    self.finite_checks = _FINITE_CHECKS.get()
    # In the matrices' dtype: the compute dtype, so that adding the carrier promotes nothing.
    dtype = next((m[...].dtype for m in direct.matrices.values()), jnp.float32)
    self.carrier = {
        name: jnp.zeros((batch_size, size), dtype) for name, size in direct.carrier_sizes.items()
    }

  def activate(self, layer: str, a: jax.Array, act: Callable[[jax.Array], jax.Array]):
    if self.record is not None:
      self.record.append((layer, tuple(a.shape[1:])))
    if self.probes is not None:
      a = a + self.probes[layer]
    if self.finite_checks is not None:
      self.finite_checks.append(diagnostics.all_finite(a))
    if not self.direct.active:
      return act(a)
    sources = self.direct.sources[layer]
    matrices = {
        name: self.direct.matrices[name][...]
        for name in (matrix_name(layer, source) for source in sources)
        if name in self.direct.matrices
    }
    h, self.carrier = _tap(act, layer, sources, a, self.carrier, matrices)
    return h

  def finish(self, logits: jax.Array) -> jax.Array:
    if self.finite_checks is not None:
      self.finite_checks.append(diagnostics.all_finite(logits))
    if OUTPUT in self.carrier:
      return logits + self.carrier[OUTPUT]
    return logits


class DirectFeedback(nnx.Module):
  """The long-range matrices and wiring of DFA / DenseFA for one model.

  `sources` maps each hidden layer (in forward order) to where its signal comes from (see
  `layer_sources`); left empty, every layer takes the ordinary path and nothing is allocated.
  Each matrix B_{l,k} is fixed, N(0, 1/size_l) with size_l the number of units of layer l
  (SPEC §2: scale 1/√size), drawn from a key that depends only on its name, so the same matrix
  appears in every mode that uses it.
  """

  def __init__(
      self,
      sources: dict[str, tuple[str, ...]] | None = None,
      layer_shapes: Sequence[tuple[str, tuple[int, ...]]] = (),
      num_outputs: int = 0,
      *,
      rngs: nnx.Rngs | None = None,
  ):
    self.sources = dict(sources or {})
    self.active = any(s != (ADJACENT,) for s in self.sources.values())
    plan = plan_matrices(self.sources, layer_shapes, num_outputs)
    used = {source for s in self.sources.values() for source in s if source != ADJACENT}
    sizes = {**{name: math.prod(shape) for name, shape in layer_shapes}, OUTPUT: num_outputs}
    self.carrier_sizes = {source: sizes[source] for source in sorted(used)}
    base_key = rngs.feedback() if plan else None
    self.matrices = nnx.Dict({
        name: ErrorFeedback(
            jax.random.normal(jax.random.fold_in(base_key, zlib.crc32(name.encode())),
                              (source_size, layer_size)) / np.sqrt(layer_size)
        )
        for name, (source_size, layer_size) in plan.items()
    })

  def path(self, batch_size: int) -> Path:
    return Path(self, batch_size)


def activation_shapes(model: nnx.Module, input_shape: Sequence[int]) -> list:
  """(layer, pre-activation shape) of every `activate` call of the model, in forward order."""
  record = []
  token = _SHAPE_RECORD.set(record)
  graphdef, state = nnx.split(model)
  try:
    # A fresh function each call: eval_shape caches traces by function, and a cached trace
    # would not run the model's Python code that records the shapes. The model runs as a copy
    # (merge inside the trace), so batch statistics may update without touching the original.
    jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state,
                   jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  finally:
    _SHAPE_RECORD.reset(token)
  return record


@contextlib.contextmanager
def probing(probes: dict | None, finite_checks: list | None = None):
  """Within, the model adds `probes[layer]` to each hidden pre-activation and appends to
  `finite_checks` whether each pre-activation and the logits are finite (see `Path`)."""
  tokens = [_PROBES.set(probes), _FINITE_CHECKS.set(finite_checks)]
  try:
    yield
  finally:
    _FINITE_CHECKS.reset(tokens[1])
    _PROBES.reset(tokens[0])
