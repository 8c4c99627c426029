"""`fajax.build`: a config, or a caller's model and data, become a runnable experiment."""

import os
import pathlib
import re

import jax
import numpy as np
import pytest
from flax import nnx

import fajax
from fajax import column
from fajax import datasets
from fajax import experiments
from fajax import experiment as experiment_lib
from fajax.configs import mnist
from fajax.errors import ConfigError
from fajax.train_state import layer_kernels
from tests.fixtures import TinyMLP, mnist_experiment, single, tiny_config, tiny_data

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_built_experiment_steps_and_evaluates():
  experiment = mnist_experiment('fa_usf_sn', num_epochs=1)
  assert experiment.steps_per_epoch == 256 // 32 and experiment.total_steps == 8
  images, labels = next(experiment.train_batches(start_step=0))
  assert images.shape == (1, 32, 28, 28, 1) and labels.shape == (1, 32)
  state, metrics = experiment.train_step(experiment.state, *experiment.put_batch(images, labels))
  assert int(state.step[0]) == 1 and np.isfinite(float(metrics['train/loss'][0]))
  assert int(metrics['health'][0]) == -1
  evaluated = experiment.evaluate(state)
  assert 0 <= evaluated['eval/top1_error'][0] <= 100 and evaluated['eval/loss'][0] > 0
  assert experiment.health_checks[0] == 'the output of conv1'


def test_network_of_a_state_is_the_nnx_module_that_gives_its_logits():
  experiment = mnist_experiment('dfa')
  state = single(experiment.state)
  images = np.asarray(experiment.data.test_images[:4])
  network = experiment.network(experiment.state)
  network.eval()
  expected, _ = experiment.model.apply(state, state.params, images, train=False)
  np.testing.assert_allclose(network(experiment.model.preprocess(images)), expected, rtol=1e-6)
  np.testing.assert_array_equal(network.conv2.feedback[...], state.feedback['conv2'])


def test_caller_model_and_data_need_no_model_or_dataset_in_the_config():
  module = TinyMLP(rngs=nnx.Rngs(params=3, feedback=4))
  w, b = np.asarray(module.fc1.kernel[...]), np.asarray(module.fc1.feedback[...])
  experiment = fajax.build(tiny_config('fa'), model=module, data=tiny_data())
  assert experiment.caller_objects == {'model': 'tests.fixtures.TinyMLP',
                                       'data': 'fajax.datasets.base.InMemoryDataset'}
  # W and B are the module's own; FA keeps B.
  state = single(experiment.state)
  np.testing.assert_array_equal(layer_kernels(state.params, ['fc1'])['fc1'], w)
  np.testing.assert_array_equal(state.feedback['fc1'], b)
  metrics = fajax.train(tiny_config('fa'), model=module, data=tiny_data())
  assert metrics['step'] == 8 and 0 <= metrics['eval/top1_error'] <= 100


def test_dfa_wires_a_caller_model_through_its_taps():
  experiment = fajax.build(tiny_config('dfa'), model=TinyMLP(rngs=nnx.Rngs(0)),
                           data=tiny_data())
  assert list(experiment.state.error_feedback['direct']['matrices']) == ['fc1_from_output']
  # DFA: fc1's signal is B·e from the output, not what reaches it through fc2.
  state, metrics = experiment.diagnose_step(
      experiment.state, *experiment.put_batch(*next(experiment.train_batches(0))))
  assert single(metrics)['align/fc1/angle_delta_deg'] > 10


class PlainLinear(nnx.Module):

  def __init__(self, rngs):
    self.fc = nnx.Linear(64, 3, rngs=rngs)

  def __call__(self, x):
    return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize('model,data,message', [
    (None, None, "config.model is empty; choose one of: lenet5, .*, or pass model= to "
                 "fajax.train"),
    (lambda: TinyMLP(rngs=nnx.Rngs(0)), lambda: object(),
     'data= lacks spec, num_train, train_batches, eval_batches; give an object with the '
     'protocol of fajax.datasets.Dataset'),
    (lambda: PlainLinear(nnx.Rngs(0)), tiny_data,
     'model PlainLinear has no feedback layers: build it from fajax.FeedbackDense'),
    (lambda: TinyMLP(rngs=nnx.Rngs(0)),
     lambda: datasets.InMemoryDataset.random(datasets.Spec(3, (6, 6, 1)), (6, 6, 1), 32, 8),
     r"model TinyMLP cannot take the dataset's inputs of shape \(6, 6, 1\): "),
    (lambda: TinyMLP(rngs=nnx.Rngs(0)),
     lambda: datasets.InMemoryDataset.random(datasets.Spec(5, (8, 8, 1)), (8, 8, 1), 32, 8),
     r'model TinyMLP returns \(3,\) per example, but the dataset has 5 classes'),
], ids=['no-model', 'not-a-dataset', 'no-feedback-layers', 'wrong-input', 'wrong-classes'])
def test_caller_objects_that_cannot_run_are_one_line_config_errors(model, data, message):
  config = tiny_config('fa', dataset='' if data else 'mnist')
  with pytest.raises(ConfigError, match=message):
    fajax.build(config, model=model and model(), data=data and data())


def test_a_caller_model_places_its_own_taps_whatever_error_after_pooling_says():
  # The MNIST configs set error_after_pooling for LeNet-5; a caller's model is built already.
  matrices = [
      list(fajax.build(tiny_config('dfa', error_after_pooling=after), data=tiny_data(),
                       model=TinyMLP(rngs=nnx.Rngs(0))).state.error_feedback['direct']['matrices'])
      for after in (False, True)]
  assert matrices == [['fc1_from_output']] * 2


@pytest.mark.parametrize('path', sorted(str(experiments.path_of(name)) for name in experiments.names()),
                         ids=os.path.basename)
def test_every_experiment_config_loads_and_validates(path):
  config = column.load_config(pathlib.Path(path))
  experiment_lib.validate_config(config)
  assert os.path.basename(path) == f'{config.column}_{config.method}.py'


@pytest.mark.parametrize('field,value,expected', [
    ('kernel_init', 'xavier', "unknown kernel_init 'xavier'; choose one of: "),
    ('batch_size', 0, 'batch_size must be positive, got 0'),
    ('model', 'vgg16', "unknown model 'vgg16'; choose one of: lenet5, "),
    ('dataset', 'svhn', "unknown dataset 'svhn'; choose one of: mnist, cifar10, "),
    ('optimizer', 'rmsprop', "unknown optimizer 'rmsprop'; choose one of: sgd, adam"),
    ('model_width', -1.0, 'model_width must be positive, got -1.0'),
])
def test_validate_config_names_the_bad_field(field, value, expected):
  config = mnist.get_config('bp')
  config[field] = value
  with pytest.raises(ConfigError, match=re.escape(expected)):
    experiment_lib.validate_config(config)


def test_the_readme_python_examples_run(mnist_data_dir, monkeypatch, tmp_path):
  readme = (REPO / 'README.md').read_text()
  examples = re.findall(r'```python\n(.*?)```', readme, re.DOTALL)
  assert any('fajax.build(' in code for code in examples)
  assert any('fajax.train(config, model=' in code and 'fajax.to_feedback(' in code
             for code in examples)
  monkeypatch.setenv('FAJAX_DATA_DIR', mnist_data_dir)
  monkeypatch.chdir(tmp_path)
  for code in examples:
    namespace = {}
    exec(compile(code, 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
