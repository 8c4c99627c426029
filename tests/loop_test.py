"""The training loop: the schedule of calls, divergence reports, and the same losses as before
`fajax.build` existed."""

import collections
import dataclasses
import json
import pathlib
import re

import pytest
from flax import nnx

import fajax
from fajax import loop
from fajax import plot
from fajax import replicas as replicas_lib
from fajax.configs import mnist
from fajax import experiment
from fajax.errors import ConfigError
from fajax.errors import DivergenceError
from tests.fixtures import TinyMLP, random_mnist, tiny_config, tiny_data

DATA = pathlib.Path(__file__).resolve().parent / 'data'


def _short_mnist_config(method, data_dir):
  """40 steps of the MNIST protocol on the first 2048 training images: 3 call shapes, a
  checkpoint, a diagnosed step every 10."""
  config = mnist.get_config(method)
  config.update(data_dir=data_dir, num_train_steps=40, log_every_steps=10, steps_per_call=4,
                train_examples_limit=2048, eval_examples_limit=500, eval_batch_size=250,
                checkpoint_every_steps=20,
                error_after_pooling=False)  # DFA's error entry when the losses were recorded
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


@pytest.mark.parametrize('total,intervals,steps_per_call,diagnostics,diagnose', [
    (1875, [100, 1875, 1875], 33, True, True),  # one MNIST epoch: 8 lone steps before 1875
    (1875, [100, 1875, 1875], 33, False, False),  # nothing diagnoses
    (1875, [100, 1875, 1875], 1, True, False),  # every step is lone
    (18750, [100, 1875, 18750], 33, True, False),  # ten epochs: each evaluation leaves some
])
def test_lone_steps_take_the_diagnosing_program_only_where_a_stack_holds_them_all(
    total, intervals, steps_per_call, diagnostics, diagnose):
  assert loop.lone_steps_diagnose(total, intervals, 100, steps_per_call, diagnostics) == diagnose


@pytest.mark.parametrize('num_train_steps,calls', [
    (10, {'train_steps': 2, 'diagnose_step': 4}),  # steps 4 and 9 lone, 5 and 10 diagnosed
    (20, {'train_steps': 4, 'train_step': 4, 'diagnose_step': 4}),  # 4 lone: more than a stack
])
def test_a_run_with_few_lone_steps_compiles_no_plain_step(num_train_steps, calls, monkeypatch):
  made = collections.Counter()
  calls_of_steps = ('train_step', 'diagnose_step', 'train_steps')

  def counting_build(*args, **kwargs):
    built = experiment.build(*args, **kwargs)

    def counted(name):
      def call(*call_args):
        made[name] += 1
        return getattr(built, name)(*call_args)
      return call

    return dataclasses.replace(built, **{name: counted(name) for name in calls_of_steps})

  monkeypatch.setattr(loop, 'build', counting_build)
  config = tiny_config(num_train_steps=num_train_steps, log_every_steps=5, steps_per_call=3,
                       eval_every_epochs=100)
  first = fajax.train(config, model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  assert made == calls
  # The diagnosing program steps as the plain one does, bit for bit.
  monkeypatch.setattr(loop, 'lone_steps_diagnose', lambda *args: False)
  made.clear()
  plain = fajax.train(config, model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  assert made['train_step'] == num_train_steps // 5  # one lone step per interval
  assert plain['replicas'] == first['replicas']


def test_divergence_is_said_per_replica_and_ends_the_run_only_when_all_diverged():
  checks = ['the output of conv1', 'the loss']
  replicas = [replicas_lib.Replica(i, i, {'learning_rate': 0.1}) for i in range(2)]
  said, reported = [], set()
  check = lambda steps, codes, kept=None: loop.check_divergence(
      steps, codes, checks, replicas, reported, kept, said.append)
  check([-1, -1], [-1, -1])  # all healthy: nothing said or raised
  check([-1, 8], [-1, 1])
  check([-1, 8], [-1, 1])  # said once
  assert said == ['replica 1 (seed 1, learning_rate 0.1) diverged at step 8: NaN or Inf in the '
                  'loss; it stays frozen there, the others go on']
  with pytest.raises(DivergenceError, match=r'^training diverged at step 8: NaN or Inf in the '
                     r'loss; the last good checkpoint \(step 5\) is kept\. Lower'):
    check([9, 8], [0, 1], kept=5)
  with pytest.raises(DivergenceError, match=r'at step 7: NaN or Inf in the output of conv1; '
                     r'Lower the learning rate'):
    loop.check_divergence([7], [0], checks, replicas[:1], set(), None, said.append)


def test_durations_read_as_hours_minutes_seconds():
  assert loop.format_duration(0) == '0:00:00'
  assert loop.format_duration(3725.9) == '1:02:05'


def _random_mnist_config(**overrides):
  config = mnist.get_config('bp_noise')  # B has randomness of its own: seeded per replica
  config.update(num_train_steps=12, log_every_steps=4, steps_per_call=2, eval_batch_size=32,
                diagnostics=False, **overrides)
  return config


def test_a_replica_is_the_run_of_its_seed():
  data = random_mnist(num_train=128, num_test=32)
  together = fajax.train(_random_mnist_config(seed=3, replicas=2), data=data)
  alone = fajax.train(_random_mnist_config(seed=4), data=data)
  assert [r['seed'] for r in together['replicas']] == [3, 4]
  replica, single_run = together['replicas'][1], alone['replicas'][0]
  for key in ('train/loss', 'eval/loss', 'train/learning_rate'):
    assert replica[key] == pytest.approx(single_run[key], rel=1e-4), key
  assert together['replicas'][0]['eval/loss'] != pytest.approx(replica['eval/loss'], rel=1e-4)
  assert together['eval/loss'] == pytest.approx(
      (together['replicas'][0]['eval/loss'] + replica['eval/loss']) / 2)


def test_a_diverging_replica_is_reported_and_left_out_of_the_means(tmp_path, capsys):
  config = tiny_config('fa', replicas=2, lr_schedule='constant', num_train_steps=6)
  config.sweep.learning_rate = (0.05, 1e30)
  final = fajax.train(config, str(tmp_path), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  out = capsys.readouterr().out
  assert out.startswith('4 replicas in one program: seeds 0–1 × learning_rate 0.05, 1e+30\n')
  assert re.search(r'replica 2 \(seed 0, learning_rate 1e\+30, weight_decay 0\) diverged at '
                   r'step \d: NaN or Inf in .*; it stays frozen there, the others go on', out)
  records = final['replicas']
  assert [('diverged_step' in r) for r in records] == [False, False, True, True]
  assert records[2]['diverged_in'].startswith('the ')
  healthy = [r['eval/top1_error'] for r in records[:2]]
  assert final['eval/top1_error'] == pytest.approx(sum(healthy) / 2)
  logged = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert {r['replica'] for r in logged if 'diverged_step' in r} == {2, 3}
  paths = plot.plot([str(tmp_path)], str(tmp_path / 'plots'))  # mean ± std bands
  assert all(pathlib.Path(p).read_bytes().startswith(b'\x89PNG') for p in paths)


def test_profile_steps_write_a_trace_that_tensorboard_and_perfetto_read(tmp_path):
  config = tiny_config('bp', num_train_steps=6, profile_steps='2:4', log_every_steps=3)
  fajax.train(config, str(tmp_path), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
  [run] = (tmp_path / 'profile' / 'plugins' / 'profile').iterdir()
  names = {path.name for path in run.iterdir()}
  assert any(name.endswith('.xplane.pb') for name in names), names
  assert 'perfetto_trace.json.gz' in {path.name for path in (tmp_path / 'profile').rglob('*')}


@pytest.mark.parametrize('spec', ['4', '4:2', '-1:3', 'a:b', '2:'])
def test_a_malformed_profile_range_is_a_config_error(spec):
  with pytest.raises(ConfigError, match='profile_steps must be'):
    experiment.validate_config(tiny_config('bp', profile_steps=spec), model_given=True,
                               data_given=True)


def test_profiling_a_run_without_a_workdir_is_a_config_error():
  with pytest.raises(ConfigError, match='give a workdir'):
    fajax.train(tiny_config('bp', num_train_steps=2, profile_steps='0:1'),
                model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())
