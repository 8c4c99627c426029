"""The PyTorch reference (benchmarks/pytorch_reference.py) and the comparison with it
(benchmarks/versus_pytorch.py), at tiny sizes."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SKIP_LINE = "PyTorch not installed: pip install -e '.[peer]' to compare against it; skipped"


def subprocess_env() -> dict:
  return {**os.environ, 'PYTHONPATH': os.pathsep.join(
      filter(None, [str(REPO), os.environ.get('PYTHONPATH')]))}


@pytest.fixture(scope='module')
def reference():
  """benchmarks/pytorch_reference.py as a module, with torch."""
  torch = pytest.importorskip('torch')
  sys.path.insert(0, str(REPO / 'benchmarks'))
  try:
    import pytorch_reference  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.remove(str(REPO / 'benchmarks'))
  torch.manual_seed(0)
  return pytorch_reference


def test_comparison_reports_each_method_against_its_pytorch_reference(tmp_path):
  pytest.importorskip('torch')
  result = subprocess.run(
      [sys.executable, 'benchmarks/versus_pytorch.py', '--methods=bp,fa', '--batch_sizes=32',
       '--steps=2', '--rounds=1', '--warmup=1', '--eval_examples=1000', f'--out={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, env=subprocess_env(), timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]

  report = json.loads((tmp_path / 'versus_pytorch.json').read_text())
  steps = report['steps']
  assert [(r['method'], r['torch_method'], r['batch']) for r in steps] == [
      ('bp', 'bp', 32), ('fa', 'fa', 32)]
  for row in steps:
    assert row['fajax_ms'] > 0 and row['torch_ms'] > 0
    assert row['ratio'] == pytest.approx(row['fajax_ms'] / row['torch_ms'])
  evaluation = report['evaluation_s']
  for step, epoch in zip(steps, report['epochs']):
    assert epoch['steps_per_epoch'] == 60000 // 32
    # The estimate: every step of an epoch, then the evaluation of the whole test set.
    assert epoch['fajax_s'] == pytest.approx(
        1875 * step['fajax_ms'] / 1e3 + evaluation['fajax'])
    assert epoch['torch_s'] == pytest.approx(1875 * step['torch_ms'] / 1e3 + evaluation['torch'])
    assert epoch['ratio'] == pytest.approx(epoch['fajax_s'] / epoch['torch_s'])
  assert 'whole_command' not in report

  markdown = (tmp_path / 'versus_pytorch.md').read_text()
  for row in steps:
    assert (f"| {row['method']} | {row['torch_method']} | 32 | {row['fajax_ms']:.2f} | "
            f"{row['torch_ms']:.2f} | {row['ratio']:.3f} |") in markdown
  assert markdown in result.stdout


def test_dense_feedback_sends_the_input_gradient_through_b(reference):
  import torch  # pylint: disable=g-import-not-at-top
  x, weight, feedback, bias = (torch.randn(*shape, requires_grad=True)
                               for shape in ((3, 4), (5, 4), (5, 4), (5,)))
  dy = torch.randn(3, 5)
  dx, dweight, dfeedback, dbias = torch.autograd.grad(
      reference.LinearFeedback.apply(x, weight, feedback, bias), (x, weight, feedback, bias),
      dy, allow_unused=True)
  bp = torch.autograd.grad(torch.nn.functional.linear(x, weight, bias), (x, weight, bias), dy)
  torch.testing.assert_close(dx, dy @ feedback.detach())
  assert not torch.allclose(dx, bp[0])  # B, not W
  torch.testing.assert_close(dweight, bp[1])
  torch.testing.assert_close(dbias, bp[2])
  assert dfeedback is None  # B is fixed: no gradient reaches it


def test_conv_feedback_sends_the_input_gradient_through_b(reference):
  import torch  # pylint: disable=g-import-not-at-top
  conv2d = torch.nn.functional.conv2d
  x, weight, feedback, bias = (torch.randn(*shape, requires_grad=True)
                               for shape in ((2, 3, 7, 7), (4, 3, 3, 3), (4, 3, 3, 3), (4,)))
  dy = torch.randn(2, 4, 5, 5)
  dx, dweight, dbias = torch.autograd.grad(
      reference.Conv2dFeedback.apply(x, weight, feedback, bias), (x, weight, bias), dy)
  bp = torch.autograd.grad(conv2d(x, weight, bias), (x, weight, bias), dy)
  # The input gradient of the same convolution with B as its weights.
  [through_feedback] = torch.autograd.grad(conv2d(x, feedback, bias), (x,), dy)
  torch.testing.assert_close(dx, through_feedback)
  assert not torch.allclose(dx, bp[0])
  torch.testing.assert_close(dweight, bp[1])
  torch.testing.assert_close(dbias, bp[2])


def test_reference_lenet5_computes_what_fajax_lenet5_computes(reference):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top

  from fajax.datasets import mnist  # pylint: disable=g-import-not-at-top
  from fajax.models.lenet import LeNet5  # pylint: disable=g-import-not-at-top

  network = LeNet5(rngs=nnx.Rngs(params=0, feedback=1))
  model = reference.LeNet5('fa', torch.Generator().manual_seed(0))
  with torch.no_grad():
    for name, layer in model.layers.items():
      kernel = np.asarray(getattr(network, name).kernel[...])
      # fajax's [height, width, in, out] and [in, out] kernels, in PyTorch's [out, in, ...].
      kernel = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
      assert layer.weight.shape == layer.feedback.shape == kernel.shape
      # The same initializer family: U(±1/√fan_in) for W and B, zero biases.
      bound = 1 / np.sqrt(np.prod(kernel.shape[1:]))
      assert layer.weight.abs().max() <= bound and np.abs(kernel).max() <= bound
      assert not layer.bias.any() and not np.asarray(getattr(network, name).bias[...]).any()
      layer.weight.copy_(torch.from_numpy(kernel.copy()))
      layer.bias.copy_(torch.from_numpy(np.array(getattr(network, name).bias[...])))
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    expected = network(mnist.preprocess(jnp.asarray(images)))
    logits = model(reference.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2)))
  np.testing.assert_allclose(logits.numpy(), np.asarray(expected), rtol=1e-4, atol=1e-4)


def test_reference_optimizer_steps_as_fajax_optimizer_and_leaves_b_fixed(reference):
  import torch  # pylint: disable=g-import-not-at-top

  from fajax.configs import mnist  # pylint: disable=g-import-not-at-top
  from fajax.optimizers import create_optimizer  # pylint: disable=g-import-not-at-top

  # A weight decay large enough for its share of each update to be far above float32 rounding.
  config = mnist.get_config('fa')
  config.weight_decay = 0.5
  total_steps = 3
  trainer = reference.Trainer('fa', total_steps, weight_decay=config.weight_decay)
  layers = trainer.model.layers
  feedback = {name: layer.feedback.clone() for name, layer in layers.items()}
  weights = lambda: {f'{n}/{w}': getattr(l, w).detach().numpy().astype(np.float64)
                     for n, l in layers.items() for w in ('weight', 'bias')}
  # fajax's own optimizer (optax.adamw, decay masked to kernels, cosine schedule), fed the
  # gradients PyTorch computed: both must take the same steps.
  tx, _ = create_optimizer(config, total_steps)
  opt_state = tx.init(weights())
  images = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8)
  labels = torch.randint(0, 10, (8,))
  for _ in range(total_steps):
    before = weights()
    trainer.step(images, labels)
    grads = {f'{n}/{w}': getattr(l, w).grad.numpy()
             for n, l in layers.items() for w in ('weight', 'bias')}
    updates, opt_state = tx.update(grads, opt_state, before)
    for name, value in weights().items():
      np.testing.assert_allclose(value - before[name], updates[name], rtol=1e-3, atol=1e-7,
                                 err_msg=name)
  for name, layer in layers.items():
    torch.testing.assert_close(layer.feedback, feedback[name], rtol=0, atol=0)


def test_without_pytorch_the_comparison_says_so_in_one_line():
  hide_torch = ("import runpy, sys; sys.modules['torch'] = None; "
                "sys.argv = ['benchmarks/versus_pytorch.py']; "
                "runpy.run_path('benchmarks/versus_pytorch.py', run_name='__main__')")
  result = subprocess.run([sys.executable, '-c', hide_torch], capture_output=True, text=True,
                          cwd=REPO, env=subprocess_env(), timeout=60)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout == SKIP_LINE + '\n'
  assert not result.stderr
