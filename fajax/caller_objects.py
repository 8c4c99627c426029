"""What a caller may pass to `fajax.build` instead of the config's model and dataset: checks
that say, in one line, what is wrong with them, and how a run records them."""

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

from fajax import convert
from fajax import datasets
from fajax.errors import ConfigError
from fajax.layers import Feedback


def check_dataset(data) -> None:
  """A caller's `data=` must follow `datasets.Dataset`: say what is missing."""
  missing = [name for name in ('spec', 'num_train', 'train_batches', 'eval_batches')
             if not hasattr(data, name)]
  missing += [f'spec.{name}' for name in ('num_classes', 'input_shape', 'preprocess')
              if hasattr(data, 'spec') and not hasattr(data.spec, name)]
  if missing:
    raise ConfigError(
        f"data= lacks {', '.join(missing)}; give an object with the protocol of "
        'fajax.datasets.Dataset (e.g. a fajax.datasets.InMemoryDataset)')


def _describe(obj) -> str:
  return f'{type(obj).__module__}.{type(obj).__qualname__}'


def describe(model, data) -> dict[str, str]:
  """'model' / 'data' → the class of the caller's object, for those given."""
  return {name: _describe(obj) for name, obj in (('model', model), ('data', data))
          if obj is not None}


def check_model(module: nnx.Module, spec: datasets.Spec,
                        config: ml_collections.ConfigDict) -> None:
  """A caller's model must hold feedback layers, no plain nnx ones that would backprop exactly
  unless `config.exact_layers` names them, and map the dataset's inputs to its classes."""
  if not isinstance(module, nnx.Module):
    raise ConfigError(f'model= must be a flax.nnx.Module, got {_describe(module)}')
  if not jax.tree.leaves(nnx.state(module, Feedback)):
    raise ConfigError(
        f'model {type(module).__name__} has no feedback layers: build it from '
        'fajax.FeedbackDense / fajax.FeedbackConv, or convert it with fajax.to_feedback')
  plain = [path for path in convert.unconverted_layers(module)
           if path not in config.exact_layers]
  if plain and config.method != 'bp':
    raise ConfigError(
        f"model {type(module).__name__} has plain nnx layers that method '{config.method}' "
        f"would train with exact backprop: {', '.join(plain)}; convert the model with "
        'fajax.to_feedback, or list them in config.exact_layers to keep them exact')
  graphdef, variables = nnx.split(module)
  inputs = jax.ShapeDtypeStruct((1, *spec.input_shape), jnp.float32)
  try:
    logits = jax.eval_shape(lambda v, x: nnx.merge(graphdef, v)(x), variables, inputs)
  except Exception as e:  # pylint: disable=broad-except  # any error of the caller's forward
    first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(
        f'model {type(module).__name__} cannot take the dataset\'s inputs of shape '
        f'{tuple(spec.input_shape)}: {first_line}') from e
  if logits.shape != (1, spec.num_classes):
    raise ConfigError(
        f'model {type(module).__name__} returns {logits.shape[1:]} per example, but the '
        f'dataset has {spec.num_classes} classes; give it {spec.num_classes} outputs')


def method_config(config: ml_collections.ConfigDict, module: nnx.Module | None):
  """`config` with the feedback layers of `exact_layers` only, those the method's rule sets
  (`rules.copy_weights_of`): the plain nnx layers named there backprop by themselves."""
  if module is None:
    return config
  plain = set(convert.unconverted_layers(module))
  method_config = config.copy_and_resolve_references()
  method_config.exact_layers = tuple(name for name in config.exact_layers if name not in plain)
  return method_config
