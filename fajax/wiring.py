"""Where DFA's and DenseFA's error enters a model: at its hand-placed taps, or at its layers.

`wire` gives a model the matrices and wiring of a direct-feedback mode (`fajax.direct`). A
model with a `DirectFeedback` module is wired at its `path.activate` taps. Any other model,
such as one converted by `fajax.to_feedback`, is wired at its feedback layers' inputs, as
BioTorch does DFA (Sanfiz & Akrout 2021): in DFA the gradient at the input of every feedback
layer but the first is replaced by B·e, with e the error at the last feedback layer's output
(the logits, when that layer is the readout). Each such input is a tap named after its layer
(e.g. 'blocks/0/attention/query'), whose "pre-activation" is the input itself, so DenseFA,
the alignment probes and the finiteness checks work there as at hand-placed taps. The last
layer's input takes e through that layer's own B in every mode (`direct.layer_sources`).
"""

import contextvars
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from fajax import convert
from fajax import direct
from fajax.errors import ConfigError
from fajax.layers import layer_name

# The `direct.Path` of the forward pass in progress: the first feedback layer's tap opens it,
# every later layer's tap continues it, the last one finishes it. Layers cannot reach the
# model's top, so they hand the path on here rather than as an argument.
_OPEN_PATH = contextvars.ContextVar('fajax_open_path', default=None)


def _identity(x: jax.Array) -> jax.Array:
  return x


class InputTap(nnx.Module):
  """A feedback layer's input as a DFA / DenseFA tap (`tapped_input` in `fajax.layers`).

  `wire` gives one to every feedback layer of a model without hand-placed taps. The first
  layer of the forward pass holds the model's `DirectFeedback` (`direct`) and opens a path;
  the last one `finishes` it, adding the carrier to its output. Called on its own, outside a
  forward pass of the model, a layer passes through its tap unchanged.
  """

  def __init__(self, layer: str):
    self.layer = layer
    self.direct = nnx.data(None)
    self.finishes = False

  def enter(self, x: jax.Array) -> jax.Array:
    if self.direct is not None:
      _OPEN_PATH.set(self.direct.path(x.shape[0]))
      return x  # the model's input: no gradient is needed there
    path = _OPEN_PATH.get()
    return x if path is None else path.activate(self.layer, x, _identity)

  def leave(self, y: jax.Array) -> jax.Array:
    path = _OPEN_PATH.get()
    if not self.finishes or path is None:
      return y
    _OPEN_PATH.set(None)
    return path.finish(y)


def _direct_feedback(mode: str, network_taps: Sequence[direct.Tap], num_outputs: int,
                     rngs: nnx.Rngs, memory_budget_mb: float,
                     name: str) -> direct.DirectFeedback:
  """The DirectFeedback of `mode` for these taps; ConfigError, before allocating, when its
  matrices would need more than `memory_budget_mb`."""
  sources = direct.layer_sources(mode, [tap.layer for tap in network_taps])
  plan = direct.plan_matrices(sources, network_taps, num_outputs)
  needed_mb = direct.memory_bytes(plan) / 2**20
  if needed_mb > memory_budget_mb:
    raise ConfigError(
        f'the {mode!r} feedback matrices of {name} need {needed_mb:,.1f} MB, over '
        f'direct_feedback_memory_budget_mb={memory_budget_mb:,.1f}; raise the budget '
        'if the machine has the memory, or use a smaller model'
    )
  return direct.DirectFeedback(sources, network_taps, num_outputs, rngs=rngs)


def _layer_calls(network: nnx.Module, input_shape: Sequence[int]) -> list[direct.Tap]:
  """The Tap of every call of a feedback layer with an InputTap, in forward order."""
  graphdef, state = nnx.split(network)
  record: list[direct.Tap] = []

  def forward(state, x):
    recorder = direct.DirectFeedback()
    recorder.shape_record = record
    token = _OPEN_PATH.set(recorder.path(x.shape[0]))
    try:
      nnx.merge(graphdef, state)(x)
    finally:
      _OPEN_PATH.reset(token)

  jax.eval_shape(forward, state, jax.ShapeDtypeStruct((1, *input_shape), jnp.float32))
  return record


def _wire_inputs(network, mode, input_shape, rngs, memory_budget_mb, name):
  """`wire` for a model without hand-placed taps: an InputTap on every feedback layer."""
  layers = {layer_name(path): module for path, module in nnx.iter_modules(network)
            if isinstance(module, tuple(convert.FEEDBACK_LAYERS.values()))}
  for layer, module in layers.items():
    module.input_tap = InputTap(layer)
  network_taps = _layer_calls(network, input_shape)
  calls = [tap.layer for tap in network_taps]
  repeated = sorted({layer for layer in calls if calls.count(layer) > 1})
  if repeated:
    if mode != direct.ADJACENT:
      raise ConfigError(
          f'{name} calls {", ".join(repeated)} more than once per forward pass, so {mode!r} '
          'feedback cannot tap each feedback layer\'s input once; mark its hidden '
          'nonlinearities with path.activate (fajax.direct) instead')
    for module in layers.values():  # other methods need no taps: the model stays as it was
      module.input_tap = None
    return network
  if mode != direct.ADJACENT and len(calls) < 2:
    raise ConfigError(
        f'{name} has a single feedback layer, so {mode!r} feedback has nowhere to deliver the '
        'error; give it hidden feedback layers')
  first, last = layers[calls[0]], layers[calls[-1]]
  outputs = jax.eval_shape(
      last, jax.ShapeDtypeStruct((1, *network_taps[-1].pre_activation), jnp.float32))
  first.input_tap.direct = _direct_feedback(
      mode, network_taps[1:], math.prod(outputs.shape[1:]), rngs, memory_budget_mb, name)
  last.input_tap.finishes = True
  return network


def wire(network: nnx.Module, mode: str, input_shape: Sequence[int], num_outputs: int,
         rngs: nnx.Rngs, memory_budget_mb: float = float('inf'), name: str = 'the model'):
  """Gives the network the matrices and wiring of `mode` ('output': DFA, 'all': DenseFA,
  'adjacent': every other method), in place.

  With a DirectFeedback module, the network is wired at its taps (that module is replaced;
  `num_outputs` sizes e), as is a network wired before. Otherwise it is wired at its feedback layers' inputs in every mode,
  so that the alignment probes and finiteness checks see its hidden signals as they see a
  tapped model's; a model that calls a layer twice per forward pass is left untapped, which
  DFA and DenseFA refuse. Raises ConfigError, before allocating, when the matrices would need
  more than `memory_budget_mb` or DFA / DenseFA have nowhere to deliver the error.
  """
  located = direct.locate(network)
  if located is None:
    return _wire_inputs(network, mode, input_shape, rngs, memory_budget_mb, name)
  path, wired = located
  if mode == direct.ADJACENT:
    if wired.active:  # wired before, e.g. `Experiment.network` of a DFA run: unwire
      convert.replace_at(network, path, direct.DirectFeedback())
    return network
  network_taps = direct.taps(network, input_shape)
  convert.replace_at(network, path, _direct_feedback(
      mode, network_taps, num_outputs, rngs, memory_budget_mb, name))
  return network
