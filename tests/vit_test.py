"""The vision transformer: plain NNX converted to feedback layers, the same function and, under
B = W, backprop's gradients; one real training step of each of its experiments."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax import models
from fajax.convert import FEEDBACK_LAYERS, unconverted_layers
from fajax.models.vit import VisionTransformer
from tests.fixtures import experiment_config, random_mnist, single, tiny_config, tiny_data

VIT_EXPERIMENTS = ('mnist_vit_bp', 'mnist_vit_fa', 'mnist_vit_fa_usf_sn', 'mnist_vit_dfa')


def _small_vit():
  """The ViT at a size that compiles quickly: 8×8 images, 4 patches, two blocks of 2 heads."""
  return VisionTransformer(3, image_size=8, patch_size=4, width=8, depth=2, num_heads=2,
                           mlp_width=16, rngs=nnx.Rngs(0))


def _outputs_and_gradients(module, x):
  """The module's outputs, and a loss's gradients with respect to its parameters and input."""
  graphdef, params, rest = nnx.split(module, nnx.Param, ...)
  forward = lambda params, x: nnx.merge(graphdef, params, rest)(x)
  loss = lambda params, x: jnp.sum(jnp.sin(forward(params, x)) * jnp.arange(3.0))
  dparams, dx = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)
  return jax.jit(forward)(params, x), nnx.to_pure_dict(dparams), dx


def test_the_converted_vit_computes_the_same_and_under_b_equal_w_has_backprops_gradients():
  plain = _small_vit()
  converted = fajax.to_feedback(plain, rngs=nnx.Rngs(feedback=1))
  assert unconverted_layers(plain) and not unconverted_layers(converted)
  x = jax.random.normal(jax.random.key(2), (4, 8, 8, 1))
  y, _, dx = _outputs_and_gradients(converted, x)
  expected_y, expected_dparams, expected_dx = _outputs_and_gradients(plain, x)
  np.testing.assert_allclose(y, expected_y, rtol=1e-5, atol=1e-6)
  assert not np.allclose(dx, expected_dx, atol=1e-3)  # FA's B routes the input gradient
  for _, layer in nnx.iter_modules(converted):
    if isinstance(layer, tuple(FEEDBACK_LAYERS.values())):
      layer.feedback[...] = layer.kernel[...]  # what BP's rule sets
  _, dparams, dx = _outputs_and_gradients(converted, x)
  np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-6)
  assert dparams.keys() == expected_dparams.keys()
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), dparams,
               expected_dparams)


def test_vit_tiny_is_converted_and_tapped_at_every_layer_input_but_the_patch_embedding():
  network = models.create('vit_tiny', 10, (32, 32, 1), 'lecun_normal',
                          nnx.Rngs(params=0, feedback=1), direct_mode='output')
  assert not unconverted_layers(network)
  matrices = network.patch_embedding.input_tap.direct.matrices
  per_block = ('attention/query', 'attention/key', 'attention/value', 'attention/out',
               'mlp_in', 'mlp_out')
  # The readout's input takes e through the readout's own B.
  assert sorted(matrices) == sorted(f'blocks/{block}/{layer}_from_output'
                                    for block in range(4) for layer in per_block)
  # 64 patches of width 64 (the MLP's hidden layer: 128) each receive e's 10 classes.
  assert matrices['blocks/0/attention/query_from_output'][...].shape == (10, 64 * 64)
  assert matrices['blocks/3/mlp_out_from_output'][...].shape == (10, 64 * 128)


# DFA's step is the one with the most wiring; the others compile the same ViT for ≈ 1 minute
# each on 2 cores, and the small ViT above checks their layers, so they run with --runslow.
@pytest.mark.parametrize('name', [
    pytest.param(name, marks=() if name == 'mnist_vit_dfa' else pytest.mark.slow)
    for name in VIT_EXPERIMENTS])
def test_each_vit_experiment_takes_a_real_training_step(name):
  config = experiment_config(name, batch_size=8, eval_batch_size=8, num_train_steps=1,
                             warmup_steps=0)
  experiment = fajax.build(config, data=random_mnist(num_train=8, num_test=8))
  start = single(experiment.state)
  state, metrics = experiment.train_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(start_step=0))))
  metrics, end = single(metrics), single(state)
  assert np.isfinite(metrics['train/loss']) and metrics['health'] == -1
  kernels = lambda s: s.params['blocks'][2]['attention']['value']['kernel']
  assert not np.allclose(kernels(end), kernels(start))


def test_the_alignment_of_a_converted_vit_is_measured_per_layer_by_path():
  converted = fajax.to_feedback(_small_vit(), rngs=nnx.Rngs(feedback=1))
  experiment = fajax.build(tiny_config('dfa'), model=converted, data=tiny_data())
  _, metrics = experiment.diagnose_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(start_step=0))))
  metrics = single(metrics)
  layers = [layer for layer, _ in experiment.model.hidden_shapes]
  assert layers[:5] == ['blocks/0/attention/query', 'blocks/0/attention/key',
                        'blocks/0/attention/value', 'blocks/0/attention/out', 'blocks/0/mlp_in']
  assert layers[-1] == 'head'
  for layer in ('patch_embedding', *layers):
    for measure in ('angle_wb_deg', 'norm_ratio', 'angle_update_deg'):
      assert np.isfinite(metrics[f'align/{layer}/{measure}']), (layer, measure)
  for layer in layers:
    assert np.isfinite(metrics[f'align/{layer}/angle_delta_deg']), layer
  # DFA's signal at a hidden layer's input is B·e, far from BP's.
  assert metrics['align/blocks/0/mlp_in/angle_delta_deg'] > 10
