"""The training loop: the schedule of calls, divergence reports, and the same losses as before
`fajax.build` existed."""

import json
import pathlib

import pytest

import fajax
from fajax import loop
from fajax.configs import mnist
from fajax.errors import DivergenceError

DATA = pathlib.Path(__file__).resolve().parent / 'data'


def _short_mnist_config(method, data_dir):
  """40 steps of the MNIST protocol on the first 2048 training images: 3 call shapes, a
  checkpoint, a diagnosed step every 10."""
  config = mnist.get_config(method)
  config.update(data_dir=data_dir, num_train_steps=40, log_every_steps=10, steps_per_call=4,
                train_examples_limit=2048, eval_examples_limit=500, eval_batch_size=250,
                checkpoint_every_steps=20)
  return config


@pytest.mark.parametrize('method', ['bp', 'dfa'])
def test_same_losses_as_before_the_build_api(method, mnist_data_dir, tmp_path):
  # Recorded with the trainer before it was split into build / steps / loop / workdir.
  reference = json.loads((DATA / 'short_mnist_run_before_build.json').read_text())[method]
  final = fajax.train(_short_mnist_config(method, mnist_data_dir), str(tmp_path))
  lines = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  losses = [line['train/loss'] for line in lines if 'train/loss' in line]
  assert losses == pytest.approx(reference['train_loss'], rel=1e-4)
  assert final['eval/loss'] == pytest.approx(reference['eval_loss'], rel=1e-4)
  assert final['eval/top1_error'] == pytest.approx(reference['eval_top1_error'], abs=0.21)


@pytest.mark.parametrize('steps_per_call,diagnose,calls', [
    (1, True, [1] * 10),
    (4, True, [4, 4, 1, 1]),  # the diagnosed 10th step alone
    (4, False, [4, 4, 1, 1]),
    (3, False, [3, 3, 3, 1]),
    (5, False, [5, 5]),
    (5, True, [5, 1, 1, 1, 1, 1]),
])
def test_calls_fill_the_steps_up_to_a_stop(steps_per_call, diagnose, calls):
  step, made = 0, []
  while step < 10:
    made.append(loop.steps_in_next_call(step, 10, steps_per_call, diagnose))
    step += made[-1]
  assert made == calls


def test_divergence_names_the_step_the_check_and_the_kept_checkpoint():
  checks = ['the output of conv1', 'the loss']
  loop.check_health([-1, -1], 7, checks, kept_step=None)  # all finite: nothing raised
  with pytest.raises(DivergenceError, match=r'^training diverged at step 8: NaN or Inf in the '
                     r'loss; the last good checkpoint \(step 5\) is kept\. Lower'):
    loop.check_health([-1, 1, 0], 7, checks, kept_step=5)
  with pytest.raises(DivergenceError, match=r'at step 7: NaN or Inf in the output of conv1; '
                     r'Lower the learning rate'):
    loop.check_health([0], 7, checks, kept_step=None)


def test_durations_read_as_hours_minutes_seconds():
  assert loop.format_duration(0) == '0:00:00'
  assert loop.format_duration(3725.9) == '1:02:05'
