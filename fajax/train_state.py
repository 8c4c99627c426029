"""The train state and the model's structure: everything a step reads, as explicit arrays.

    network = make_network_program(make_network, inputs, direct_mode, input_shape, seeds)
    model, initialize, shardings = make_initializer(network, optimizer, make_method, ...)
    states = initialize(inputs, seeds, hyperparams, initial_weights)
    logits, model_state = model.apply(state, state.params, raw_images, train=True)

The state holds W and biases, B by layer name, DFA/DenseFA matrices, batch-norm statistics,
and the optimizer's, rule's and constraint's state; `Model` holds what is static under jit.
`make_initializer` makes one state per replica (`fajax.replicas`), stacked on a leading axis,
from the network that `make_network_program` draws (shared by builds of the same network).
"""

import dataclasses
from collections.abc import Callable
import typing
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax import traverse_util

from fajax import direct
from fajax import methods
from fajax import sharding
from fajax import weights_file
from fajax.direct import ErrorFeedback
from fajax.layers import Feedback, layer_name
from fajax.optimizers import set_hyperparams

_LEARNED_OR_FEEDBACK = nnx.Any(nnx.Param, Feedback, ErrorFeedback)


# The initial state is computed once, so its compile time is what counts while it is small.
# LLVM's optimisation of JAX's Threefry loop takes seconds per parameter shape on CPU (LeNet-5's
# init: ≈ 10 s of a run's start); unoptimised, the same integer hash and float transforms give
# the same values (to the last bit, but for an ulp where LLVM would fuse a multiply-add), in a
# fraction of that. But they run ≈ 5× slower (ResNet-18's 23 M values: 2.4 s against 0.5), so
# past a few million values the optimised init is the faster one, compiled as XLA compiles by
# default: under the older loop emitters that XLA_FLAGS may choose (the test suite does) its
# compile takes 1.6× as long (ResNet-18: 6.5 against 3.9 s) (BUILD_NOTES.md, "Tests and CI time").
UNOPTIMISED_INIT_MAX_VALUES = 4_000_000


def _init_compiler_options(num_values: int) -> dict | None:
  """XLA options for the init program of a replica's state of `num_values` numbers:
  unoptimised on CPU for a small state, XLA's defaults (level 2, its fusion emitters) for a
  large one, whatever XLA_FLAGS say."""
  if jax.default_backend() != 'cpu':
    return None
  if num_values <= UNOPTIMISED_INIT_MAX_VALUES:
    return {'xla_backend_optimization_level': 0}
  return {'xla_backend_optimization_level': 2, 'xla_cpu_use_fusion_emitters': True}


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: dict  # the model's nnx.Param state as a nested dict: W and biases
  feedback: dict  # layer name (`layers.layer_name` of its path) → its feedback weights B
  error_feedback: dict  # DFA / DenseFA matrices (fixed), empty for other methods
  model_state: dict  # every other model variable: batch-norm statistics, dropout RNG counts
  opt_state: Any  # an optax state tree (optax.OptState, which the API reference cannot render)
  rule_state: Any
  constraint_state: Any
  # The step at which this replica's loss, gradients or weights first turned NaN/Inf, and the
  # index of that check (`diagnostics.health_checks`); -1 while it is healthy. From then on
  # the replica's state stays as it was before that step.
  diverged_step: jax.Array
  diverged_check: jax.Array

  if typing.TYPE_CHECKING:  # flax.struct adds it; declared here for type checkers
    def replace(self, **changes) -> 'TrainState': ...


def _kernel_paths(flat_params: dict) -> dict[str, tuple]:
  """Layer name (`layers.layer_name`) → the path of its kernel among `flat_params`' keys.

  The paths keep NNX's own keys, ints for the entries of an `nnx.List` or `nnx.Sequential`:
  trees rebuilt from them merge back into the module, where a key '0' would not.
  """
  return {layer_name(path[:-1]): path for path in flat_params if path[-1] == 'kernel'}


def layer_kernels(params: dict, layers) -> dict:
  """W of every feedback layer in `layers` (e.g. the feedback dict), keyed by layer name."""
  flat = traverse_util.flatten_dict(params)
  paths = _kernel_paths(flat)
  return {layer: flat[paths[layer]] for layer in layers}


def with_kernels(params: dict, kernels: dict) -> dict:
  """`params` with each layer's kernel replaced by the one in `kernels`."""
  flat = traverse_util.flatten_dict(params)
  paths = _kernel_paths(flat)
  flat.update({paths[layer]: w for layer, w in kernels.items()})
  return traverse_util.unflatten_dict(flat)


def _feedback_tree(params: dict, feedback: dict) -> dict:
  """The flat `layer name → B` dict as the nested state NNX expects, at the paths of the
  layers' kernels in `params`."""
  paths = _kernel_paths(traverse_util.flatten_dict(params))
  return traverse_util.unflatten_dict(
      {(*paths[layer][:-1], 'feedback'): b for layer, b in feedback.items()})


@dataclasses.dataclass(frozen=True)
class Model:
  """The model's structure (static under jit) and how raw batches become its inputs.

  `exact_graphdef` is the same model without DFA/DenseFA wiring: with B = W it is exact BP, the
  reference of the alignment diagnostics. `hidden_shapes` are the (layer, shape) of its hidden
  pre-activations. The forward and backward passes run in `compute_dtype`: W, B, DFA matrices,
  batch-norm scales and inputs are cast to it, while the state (W, B, optimizer, batch-norm
  statistics) stays float32, the gradients arrive in float32 and the loss is computed in it.
  """

  graphdef: nnx.GraphDef
  exact_graphdef: nnx.GraphDef
  hidden_shapes: tuple
  preprocess: Any
  compute_dtype: Any = jnp.float32

  def network(self, state: TrainState, exact: bool = False) -> nnx.Module:
    """The NNX module with the weights of `state` (B = W with `exact`)."""
    feedback = layer_kernels(state.params, state.feedback) if exact else state.feedback
    return nnx.merge(self.exact_graphdef if exact else self.graphdef, state.params,
                     _feedback_tree(state.params, feedback),
                     {} if exact else state.error_feedback,
                     state.model_state)

  def apply(
      self, state: TrainState, params: dict, raw_images: jax.Array, train: bool,
      exact: bool = False, probes: dict | None = None, finite_checks: list | None = None,
  ) -> tuple[jax.Array, dict]:
    """Logits of the model with `params` and the rest of `state`, and the new model state.

    `train` selects batch statistics (and updates the running ones) and active dropout;
    `exact` runs exact backprop (B = W, no direct feedback) instead of the method. `probes`
    and `finite_checks` instrument the hidden layers (`direct.instrumented`).
    """
    cast = lambda tree: jax.tree.map(lambda x: x.astype(self.compute_dtype), tree)
    network = self.network(state.replace(params=cast(params), feedback=cast(state.feedback),
                                         error_feedback=cast(state.error_feedback)), exact)
    if train:
      network.train()
    else:
      network.eval()
    with direct.instrumented(network, probes=probes, finite_checks=finite_checks):
      logits = network(cast(self.preprocess(raw_images)))
    model_state = nnx.to_pure_dict(nnx.state(network, nnx.Not(_LEARNED_OR_FEEDBACK)))
    return logits.astype(jnp.float32), model_state


def _split(network: nnx.Module):
  """(graphdef, params, feedback by layer name, DFA matrices, other variables), pure dicts."""
  graphdef, params, feedback, error_feedback, model_state = nnx.split(
      network, nnx.Param, Feedback, ErrorFeedback, ...
  )
  flat_feedback = traverse_util.flatten_dict(nnx.to_pure_dict(feedback))
  feedback = {layer_name(path[:-1]): b for path, b in flat_feedback.items()}
  pure = nnx.to_pure_dict
  return graphdef, pure(params), feedback, pure(error_feedback), pure(model_state)


MakeNetwork = Callable[[str, Any, Any], nnx.Module]


class NetworkProgram(NamedTuple):
  """A network's structure and the jitted program that draws its weights, for every replica.

  It depends on the network alone, not on the method, optimizer or learning rate, so builds
  of one network share it (`fajax.programs`): a sweep over methods draws through one compiled
  program, and XLA's persistent cache holds it for every run of that network.
  """

  graphdef: nnx.GraphDef
  exact_graphdef: nnx.GraphDef  # the network without DFA/DenseFA wiring (`Model`)
  hidden_shapes: tuple
  num_values: int  # of one replica's weights
  draw: Callable  # (network_inputs, seeds) -> weights_file.NetworkWeights, replicas first
  drawn: weights_file.NetworkWeights  # `draw`'s result as shapes and dtypes


def make_network_program(
    make_network: MakeNetwork,
    network_inputs: Any,
    direct_mode: str,
    input_shape: tuple[int, ...],
    seeds: np.ndarray,
    *,
    mesh=None,
    shard_large_params: bool = False,
) -> NetworkProgram:
  """The program that builds the network of `direct_mode` for each of `seeds`.

  `make_network(direct_mode, network_inputs, seed)` builds the NNX model with that
  direct-feedback wiring; `network_inputs` (arrays it builds from, such as a caller's module's
  variables, or None) are arguments of the program, not constants baked into it. Replica i is
  drawn from `seeds[i]`, to the bit what a run of that seed alone draws.
  """
  abstract = lambda mode: nnx.eval_shape(
      lambda inputs: make_network(mode, inputs, int(seeds[0])), network_inputs)
  network = abstract(direct_mode)
  graphdef, *weights = _split(network)
  exact_network = network if direct_mode == direct.ADJACENT else abstract(direct.ADJACENT)
  hidden_shapes = tuple(
      (tap.layer, tap.pre_activation) for tap in direct.taps(exact_network, input_shape))

  def draw_one(network_inputs, seed):
    _, *arrays = _split(make_network(direct_mode, network_inputs, seed))
    return weights_file.NetworkWeights(*arrays)

  num_values = sum(x.size for x in jax.tree.leaves(weights))
  drawn = jax.tree.map(lambda x: jax.ShapeDtypeStruct((len(seeds), *x.shape), x.dtype),
                       weights_file.NetworkWeights(*weights))
  shardings = None
  if mesh is not None:
    shardings = sharding.state_shardings(mesh, drawn, shard_large_params)
    # Laid out as the drawn arrays will be, so that JAX traces the init only once.
    drawn = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), drawn,
                         shardings)
  draw = jax.jit(jax.vmap(draw_one, in_axes=(None, 0)), out_shardings=shardings,
                 compiler_options=_init_compiler_options(num_values))
  return NetworkProgram(graphdef, _split(exact_network)[0], hidden_shapes, num_values, draw,
                        drawn)


def make_initializer(
    network: NetworkProgram,
    optimizer: optax.GradientTransformation,
    make_method: Callable[[Any], methods.Method],
    preprocess: Callable,
    seeds: np.ndarray,
    hyperparams: dict[str, np.ndarray],
    *,
    compute_dtype=jnp.float32,
    mesh=None,
    shard_large_params: bool = False,
    initial_weights: dict | None = None,
) -> tuple[Model, Callable[..., TrainState], Any]:
  """The model's structure, the function that creates every replica's initial state from
  `(network_inputs, seeds, hyperparams, initial_weights)` (the arguments given here show
  their shapes), and that state's shardings (None without a `mesh`).

  It draws the network (`network.draw`), then, in a second jitted program that takes over its
  buffers, adds the method's and the optimizer's state. `make_method(seed)` gives the method
  whose rule draws its randomness from `seed`. Replica i gets `hyperparams[name][i]` in its
  optimizer state; the replicas are the leading axis of every leaf. `initial_weights` (a
  `fajax.weights_file`'s arrays by name) replace the drawn network's in every replica, before
  the rule and the constraint first see W.

  Creating the state under jit gives every leaf its own buffer (B = W for BP is a copy, not an
  alias of W), so the train step can donate the whole state. On a `mesh`, the state is created
  already laid out as `sharding.state_shardings` says, with no copy on one device first.
  """

  def init(weights, seed, hyperparams, initial_weights):
    method = make_method(seed)
    if initial_weights is not None:
      weights = weights_file.start_from(initial_weights, weights)
    params, feedback, error_feedback, model_state = weights
    kernels = layer_kernels(params, feedback)
    constraint_state = method.constraint.init(kernels)
    rule_state = method.rule.init(kernels)
    feedback, rule_state = method.rule.update(feedback, rule_state, kernels)
    healthy = jnp.full((), -1, jnp.int32)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        feedback=feedback,
        error_feedback=error_feedback,
        model_state=model_state,
        opt_state=set_hyperparams(optimizer.init(params), hyperparams),
        rule_state=set_hyperparams(rule_state, hyperparams),  # Kolen–Pollack's optimizer
        constraint_state=constraint_state,
        diverged_step=healthy,
        diverged_check=healthy,
    )

  model = Model(network.graphdef, network.exact_graphdef, network.hidden_shapes, preprocess,
                jnp.dtype(compute_dtype))
  init_replicas = jax.vmap(init, in_axes=(0, 0, 0, None))
  out_shardings = None
  if mesh is not None:
    out_shardings = sharding.state_shardings(
        mesh, jax.eval_shape(init_replicas, network.drawn, seeds, hyperparams, initial_weights),
        shard_large_params)
  init_states = jax.jit(init_replicas, out_shardings=out_shardings, donate_argnums=0,
                        compiler_options=_init_compiler_options(network.num_values))

  def initialize(network_inputs, seeds, hyperparams, initial_weights):
    return init_states(network.draw(network_inputs, seeds), seeds, hyperparams,
                       initial_weights)

  return model, initialize, out_shardings
