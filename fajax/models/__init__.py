"""Models by config name; every conv and dense layer of each is a feedback layer."""

import functools
import inspect
from collections.abc import Callable, Sequence

from flax import nnx

from fajax import direct
from fajax import wiring
from fajax.errors import ConfigError
from fajax.layers import KERNEL_INITIALIZERS
from fajax.models.alexnet import AlexNet
from fajax.models.cifar_convnet import CifarConvNet
from fajax.models.lenet import LeNet5
from fajax.models.resnet import ResNet18, ResNet20
from fajax.models.vit import vit_tiny

# name → (factory(num_classes, kernel_init=, rngs=), the input shape it requires, or None for
# any image size its pooling can take)
MODELS: dict[str, tuple[Callable[..., nnx.Module], tuple[int, ...] | None]] = {
    'lenet5': (LeNet5, (32, 32, 1)),
    'cifar_convnet': (functools.partial(CifarConvNet, batch_norm=False), (32, 32, 3)),
    'cifar_convnet_bn': (functools.partial(CifarConvNet, batch_norm=True), (32, 32, 3)),
    'resnet20': (ResNet20, (32, 32, 3)),
    'resnet18': (ResNet18, None),
    'alexnet': (functools.partial(AlexNet, batch_norm=False), None),
    'alexnet_bn': (functools.partial(AlexNet, batch_norm=True), None),
    'vit_tiny': (vit_tiny, (32, 32, 1)),
}


def check_input(name: str, input_shape: Sequence[int]) -> None:
  """Raises ConfigError when the model cannot take the dataset's inputs."""
  required = MODELS[name][1]
  if required is not None and tuple(input_shape) != required:
    raise ConfigError(
        f'model {name} takes {"×".join(map(str, required))} inputs but the dataset gives '
        f'{"×".join(map(str, input_shape))}; choose a model made for this dataset'
    )


def _takes(factory: Callable, argument: str) -> bool:
  """Whether the model class or function behind `factory` has a parameter `argument`."""
  while isinstance(factory, functools.partial):
    factory = factory.func
  # NNX's metaclass hides a class's own signature.
  return argument in inspect.signature(
      getattr(factory, '__init__') if isinstance(factory, type) else factory).parameters


def create(
    name: str,
    num_classes: int,
    input_shape: Sequence[int],
    kernel_init: str,
    rngs: nnx.Rngs,
    direct_mode: str = direct.ADJACENT,
    direct_memory_budget_mb: float = float('inf'),
    error_after_pooling: bool = False,
    width: float = 1.0,
) -> nnx.Module:
  """The model, with DFA / DenseFA matrices when `direct_mode` is 'output' / 'all'.

  `error_after_pooling`: their error enters pooled layers after the pooling
  (`common.relu_then_pool`). `width` multiplies the hidden layers' widths. Raises ConfigError,
  before allocating, when those matrices would exceed the budget, or for `error_after_pooling`
  or a `width` other than 1 on a model that has no such option.
  """
  check_input(name, input_shape)
  factory, _ = MODELS[name]
  options: dict[str, bool | float] = {}
  if error_after_pooling:
    if not _takes(factory, 'error_after_pooling'):
      raise ConfigError(f'model {name} has no pooling after its tapped layers; set '
                        'error_after_pooling=False')
    options['error_after_pooling'] = True
  if width != 1:
    if not _takes(factory, 'width'):
      raise ConfigError(f'model {name} has a fixed width; set model_width=1')
    options['width'] = width
  model = factory(num_classes, kernel_init=KERNEL_INITIALIZERS[kernel_init], rngs=rngs,
                  **options)
  return wiring.wire(model, direct_mode, input_shape, num_classes, rngs,
                     direct_memory_budget_mb, name)
