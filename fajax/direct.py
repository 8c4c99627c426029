"""Feedback that skips layers: direct (DFA, Nøkland 2016) and dense (DenseFA) feedback alignment.

A model marks each hidden layer's nonlinearity with a `Path` (a model that does not is tapped
at its feedback layers' inputs instead, `fajax.wiring`):

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
import functools
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fajax import diagnostics
from fajax.errors import ConfigError

ADJACENT = 'adjacent'  # the ordinary path: the layer above's cotangent, through its own B
OUTPUT = 'output'


class ErrorFeedback(nnx.Variable):
  """Fixed random matrices that carry error signals past layers (DFA, DenseFA)."""


class FrozenMapping(Mapping):
  """A read-only mapping that hashes by value: held by a module, it keeps the module's graphdef
  hashable (a plain dict would make it a pytree node), so equal models share compiled programs
  (`fajax.programs`)."""

  def __init__(self, items=()):
    self._items = dict(items)
    self._hash = hash(tuple(self._items.items()))

  def __getitem__(self, key):
    return self._items[key]

  def __iter__(self) -> Iterator:
    return iter(self._items)

  def __len__(self) -> int:
    return len(self._items)

  def __hash__(self) -> int:
    return self._hash

  def __repr__(self) -> str:
    return f'FrozenMapping({self._items!r})'


class Tap(NamedTuple):
  """One `activate` call, h = act(a): its layer, a's shape and h's shape (per example).

  δ lives at a (probes, and the signal DenseFA sends from this layer); a skipped error signal
  enters at h. They differ when `act` includes pooling: the error then enters after pooling.
  """
  layer: str
  pre_activation: tuple[int, ...]
  output: tuple[int, ...]


def layer_sources(mode: str, layers: Sequence[str]) -> dict[str, tuple[str, ...]]:
  """Where each hidden layer's error signal comes from, for a mode 'adjacent', 'output' or 'all'.

  'adjacent' is ordinary (feedback-alignment) backprop, 'output' DFA, 'all' DenseFA. The layer
  just below the output takes the output's error through the output layer's own B in every
  mode: for it, DFA's and DenseFA's term *is* the adjacent one.
  """
  sources: dict[str, tuple[str, ...]] = {}
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


def _source_sizes(taps: Sequence[Tap], num_outputs: int) -> dict[str, int]:
  """Size of the signal each source sends: δ at a layer's pre-activation, e at the output."""
  return {**{tap.layer: math.prod(tap.pre_activation) for tap in taps}, OUTPUT: num_outputs}


def plan_matrices(
    sources: Mapping[str, tuple[str, ...]], taps: Sequence[Tap], num_outputs: int
) -> dict[str, tuple[int, int]]:
  """Name → (source size, entry size) of every long-range matrix that `sources` needs."""
  source_sizes = _source_sizes(taps, num_outputs)
  entry_sizes = {tap.layer: math.prod(tap.output) for tap in taps}
  return {
      matrix_name(layer, source): (source_sizes[source], entry_sizes[layer])
      for layer, layer_sources_ in sources.items()
      for source in layer_sources_
      if source != ADJACENT
  }


def memory_bytes(plan: dict, bytes_per_entry: int = 4) -> int:
  return sum(source * layer for source, layer in plan.values()) * bytes_per_entry


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _tap(act, layer, sources, a, carrier, matrices):
  """h = act(a), carrier passed through; see `_tap_bwd` for the backward pass."""
  del layer, sources, matrices
  return act(a), carrier


def _tap_fwd(act, layer, sources, a, carrier, matrices):
  # act as differentiated, as `_tap_bwd` recomputes it, so that XLA computes it once: a
  # route taken only where nothing differentiates (`models.common.max_pool`'s) would differ.
  h, _ = jax.vjp(act, a)
  return (h, carrier), (a, matrices)


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
  (delta,) = act_vjp(signal.reshape(ct_h.shape).astype(a.dtype))
  ct_carrier = dict(ct_carrier)
  if layer in ct_carrier:  # a layer below reads this layer's δ
    ct_carrier[layer] = delta.reshape(batch, -1)
  return delta, ct_carrier, None


_tap.defvjp(_tap_fwd, _tap_bwd)


class Path:
  """The carrier of one forward pass (see the module docstring)."""

  def __init__(self, direct: 'DirectFeedback', batch_size: int):
    self.direct = direct
    self.record = direct.shape_record
    self.probes = direct.probes
    self.finite_checks = direct.finite_checks
    # In the matrices' dtype: the compute dtype, so that adding the carrier promotes nothing.
    dtype = next((m[...].dtype for m in direct.matrices.values()), jnp.float32)
    self.carrier = {
        name: jnp.zeros((batch_size, size), dtype) for name, size in direct.carrier_sizes.items()
    }

  def activate(self, layer: str, a: jax.Array, act: Callable[[jax.Array], jax.Array]):
    if self.record is not None:
      self.record.append(Tap(layer, a.shape[1:], jax.eval_shape(act, a).shape[1:]))
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
      # Shaped as e: the output of a model tapped at its layers' inputs may have more axes
      # than [batch, classes] (`fajax.wiring`).
      return logits + self.carrier[OUTPUT].reshape(logits.shape)
    return logits


class DirectFeedback(nnx.Module):
  """The long-range matrices and wiring of DFA / DenseFA for one model.

  `sources` maps each hidden layer (in forward order) to where its signal comes from (see
  `layer_sources`); left empty, every layer takes the ordinary path and nothing is allocated.
  `taps` are the model's `Tap`s, in forward order. Each matrix B_{l,k} is fixed,
  N(0, 1/size_l) with size_l the number of entries where layer l's signal enters (entries of
  scale 1/√size_l, so B·e keeps the scale of e), drawn from a key that depends only on its name,
  so the same matrix appears in every mode that uses it.

  `shape_record`, `probes` and `finite_checks` are what `instrumented` hands the forward pass
  (see there); they are None outside it.
  """

  def __init__(
      self,
      sources: Mapping[str, tuple[str, ...]] | None = None,
      taps: Sequence[Tap] = (),
      num_outputs: int = 0,
      *,
      rngs: nnx.Rngs | None = None,
  ):
    self.sources = FrozenMapping(sources or {})
    self.active = any(s != (ADJACENT,) for s in self.sources.values())
    plan = plan_matrices(self.sources, taps, num_outputs)
    used = {source for s in self.sources.values() for source in s if source != ADJACENT}
    sizes = _source_sizes(taps, num_outputs)
    self.carrier_sizes = FrozenMapping((source, sizes[source]) for source in sorted(used))
    if plan and rngs is None:
      raise TypeError('DirectFeedback with feedback matrices to draw needs rngs')
    base_key = rngs.feedback() if plan and rngs is not None else None
    self.matrices = nnx.Dict({
        name: ErrorFeedback(
            jax.random.normal(jax.random.fold_in(base_key, zlib.crc32(name.encode())),
                              (source_size, layer_size)) / np.sqrt(layer_size)
        )
        for name, (source_size, layer_size) in plan.items()
    })
    # Set by `instrumented` for one forward pass only (see there).
    self.shape_record: list[Tap] | None = None
    self.probes: dict | None = None
    self.finite_checks: list | None = None

  def path(self, batch_size: int) -> Path:
    return Path(self, batch_size)


def locate(network: nnx.Module) -> tuple[tuple, 'DirectFeedback'] | None:
  """(path, module) of the network's one DirectFeedback module, if it has one."""
  found = [(path, module) for path, module in nnx.iter_modules(network)
           if isinstance(module, DirectFeedback)]
  if len(found) > 1:
    paths = ', '.join('/'.join(map(str, path)) for path, _ in found)
    raise ConfigError(f'the model has {len(found)} DirectFeedback modules ({paths}); give it one, '
                      'shared by every path.activate call')
  return found[0] if found else None


@contextlib.contextmanager
def instrumented(network: nnx.Module, *, shape_record: list | None = None,
                 probes: dict | None = None, finite_checks: list | None = None):
  """Within, the network's forward passes report to what is given (a no-op without taps):

  - `shape_record`: each `activate` appends its `Tap`;
  - `probes` (layer → zeros of the pre-activation's shape): each `activate` adds its probe to
    the pre-activation, so the gradient with respect to a probe is the backward signal δ there;
  - `finite_checks`: `activate` and `finish` append whether each pre-activation and the logits
    are finite, in forward order: where a diverging run first overflowed.

  They are set on the network's DirectFeedback for the duration only: outside, the module holds
  no arrays but its matrices, and splits as before.
  """
  located = locate(network)
  if located is None:
    yield
    return
  taps = located[1]
  taps.shape_record, taps.probes, taps.finite_checks = shape_record, probes, finite_checks
  try:
    yield
  finally:
    taps.shape_record, taps.probes, taps.finite_checks = None, None, None


def taps(network: nnx.Module, input_shape: Sequence[int]) -> list[Tap]:
  """The `Tap` of every `activate` call of the network, in forward order."""
  graphdef, state = nnx.split(network)

  def forward(state, x):
    # The network runs as a copy (merged inside the trace), so batch statistics may update
    # without touching the original.
    copy = nnx.merge(graphdef, state)
    with instrumented(copy, shape_record=record):
      copy(x)

  record: list[Tap] = []
  jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  return record
