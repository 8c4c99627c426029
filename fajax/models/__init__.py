"""Models by config name; every weight layer of each is a feedback layer."""

from collections.abc import Callable

from flax import nnx

from fajax import direct
from fajax.errors import ConfigError
from fajax.layers import KERNEL_INITIALIZERS
from fajax.models.lenet import LeNet5

MODELS: dict[str, Callable[..., nnx.Module]] = {'lenet5': LeNet5}


def create(
    name: str,
    num_classes: int,
    kernel_init: str,
    rngs: nnx.Rngs,
    direct_mode: str = 'adjacent',
    direct_memory_budget_mb: float = float('inf'),
) -> nnx.Module:
  """The model, with DFA / DenseFA matrices when `direct_mode` is 'output' / 'all'.

  Raises ConfigError, before allocating, when those matrices would exceed the budget.
  """
  model = MODELS[name](num_classes, kernel_init=KERNEL_INITIALIZERS[kernel_init], rngs=rngs)
  if direct_mode != direct.ADJACENT:
    shapes = direct.activation_shapes(model, model.input_shape)
    sources = direct.layer_sources(direct_mode, [layer for layer, _ in shapes])
    needed_mb = direct.memory_bytes(direct.plan_matrices(sources, shapes, num_classes)) / 2**20
    if needed_mb > direct_memory_budget_mb:
      raise ConfigError(
          f'the {direct_mode!r} feedback matrices of {name} need {needed_mb:,.1f} MB, over '
          f'direct_feedback_memory_budget_mb={direct_memory_budget_mb:,.1f}; raise the budget '
          'if the machine has the memory, or use a smaller model'
      )
    model.direct = direct.DirectFeedback(sources, shapes, num_classes, rngs=rngs)
  return model
