"""Models by config name; every weight layer of each is a feedback layer."""

from collections.abc import Callable

from flax import nnx

from fajax.layers import KERNEL_INITIALIZERS
from fajax.models.lenet import LeNet5

MODELS: dict[str, Callable[..., nnx.Module]] = {'lenet5': LeNet5}


def create(name: str, num_classes: int, kernel_init: str, rngs: nnx.Rngs) -> nnx.Module:
  return MODELS[name](num_classes, kernel_init=KERNEL_INITIALIZERS[kernel_init], rngs=rngs)
