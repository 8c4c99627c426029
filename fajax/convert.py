"""Any Flax NNX model with feedback layers in place of its dense, conv and attention layers.

    model = fajax.to_feedback(MyNet(rngs=nnx.Rngs(0)), rngs=nnx.Rngs(feedback=1))

`to_feedback` replaces every `nnx.Linear`, `nnx.Conv`, `nnx.LinearGeneral` and `nnx.Einsum`
with the feedback layer of the same arguments, holding the same W and bias at the same path,
as BioTorch's converter does for PyTorch models (Sanfiz & Akrout 2021). `unconverted_layers`
lists the plain ones a model still has: under a feedback method they would backprop exactly.
"""

import functools
import inspect
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence

from flax import nnx
from flax.nnx.nn import linear as nnx_linear

from fajax.general_layers import FeedbackEinsum, FeedbackLinearGeneral
from fajax.layers import FeedbackConv, FeedbackDense, layer_name

FEEDBACK_LAYERS = {
    nnx.Linear: FeedbackDense,
    nnx.Conv: FeedbackConv,
    nnx.LinearGeneral: FeedbackLinearGeneral,
    nnx.Einsum: FeedbackEinsum,
}
# Constructor arguments an nnx layer does not keep as an attribute of the same name.
_NOT_KEPT = frozenset({'self', 'rngs', 'kernel_init', 'bias_init', 'kernel_metadata',
                       'bias_metadata'})


def _feedback_layer(layer: nnx.Module, kernel_init, rngs: nnx.Rngs) -> nnx.Module:
  """The feedback layer of `layer`'s arguments, holding `layer`'s W and bias."""
  arguments = {name: getattr(layer, name)
               for name in inspect.signature(type(layer).__init__).parameters
               if name not in _NOT_KEPT}
  # The new layer's own W and bias, drawn from a throwaway stream, give way to the old ones.
  converted = FEEDBACK_LAYERS[type(layer)](
      **arguments, kernel_init=kernel_init, rngs=nnx.Rngs(0, feedback=rngs.feedback()))
  converted.kernel, converted.bias = layer.kernel, layer.bias
  return converted


def _child(node, key):
  return node[key] if isinstance(node, (Sequence, Mapping)) else getattr(node, key)


def replace_at(root, path: tuple, value) -> None:
  """Puts `value` at `path` (attribute names, list indices, dict keys) under `root`, as
  `nnx.iter_graph` gives paths."""
  *parents, key = path
  parent = functools.reduce(_child, parents, root)
  if isinstance(parent, tuple):  # immutable: a new tuple goes where it was
    replace_at(root, tuple(parents), parent[:key] + (value,) + parent[key + 1:])
  elif isinstance(parent, (MutableSequence, MutableMapping)):
    parent[key] = value
  else:
    setattr(parent, key, value)


def to_feedback(module: nnx.Module, *, rngs: nnx.Rngs,
                kernel_init=nnx_linear.default_kernel_init) -> nnx.Module:
  """A copy of `module` whose nnx.Linear, Conv, LinearGeneral and Einsum are feedback layers.

  Each, wherever it sits (an attribute, an `nnx.List`, an `nnx.Sequential`, a nested module),
  becomes the feedback layer (`fajax.layers`, `fajax.general_layers`) of the same arguments,
  at the same path, holding the same W and bias arrays: the forward pass is the same, and with
  B = W so is the backward pass. A layer shared by several paths stays shared. Subclasses of
  these layers (e.g. `nnx.LoRALinear`) compute more than the layer, so they stay as they are.

  B is an independent draw of `kernel_init` with keys of `rngs.feedback()`. nnx layers do not
  keep their initializer: give the one the model's layers were built with, if not nnx's
  default. `module` itself is left as it is; the copy shares its arrays.
  """
  module = nnx.clone(module)
  converted = {}  # id of an nnx layer → (that layer, its feedback layer)
  # `iter_graph` visits a shared layer once, at its first path; once replaced there, the next
  # pass finds it at its next path.
  while found := [(path, node) for path, node in nnx.iter_graph(module)
                  if type(node) in FEEDBACK_LAYERS]:
    for path, layer in found:
      if id(layer) not in converted:
        converted[id(layer)] = layer, _feedback_layer(layer, kernel_init, rngs)
      if not path:
        return converted[id(layer)][1]
      replace_at(module, path, converted[id(layer)][1])
  return module


def unconverted_layers(module: nnx.Module) -> list[str]:
  """Names (`layers.layer_name`, e.g. 'encoder/layers/0/query') of the nnx.Linear, Conv,
  LinearGeneral and Einsum layers in `module`, subclasses included."""
  return [layer_name(path) for path, node in nnx.iter_graph(module)
          if isinstance(node, tuple(FEEDBACK_LAYERS))]
