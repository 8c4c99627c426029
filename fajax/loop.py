"""The training loop: `train` = `fajax.build` + one linear walk from step to step.

Between "stops" (a logging, evaluation or checkpoint step) the loop may run several steps per
call (`config.steps_per_call`, stacked batches in one `lax.scan`); the step that ends a logging
interval runs alone, as the diagnosing step. The schedule of calls depends only on the step and
the config, so a resumed run makes the same calls as an uninterrupted one, bit for bit; that
is also why a signal may stop the run after any call (`fajax.preemption`) and
`$FAJAX_FAULT` may kill it there (`fajax.faults`).
"""

import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import jax
import ml_collections
import numpy as np

from fajax import datasets
from fajax import faults as faults_lib
from fajax import preemption
from fajax import profiling
from fajax import progress
from fajax import replicas as replicas_lib
from fajax import workdir as workdir_lib
from fajax import workdir_lock
from fajax.errors import DivergenceError
from fajax.caller_objects import describe as describe_caller_objects
from fajax.experiment import build


def steps_in_next_call(step: int, stop: int, steps_per_call: int, diagnose_at_stop: bool) -> int:
  """How many steps the trainer's next call runs, from `step` towards the next `stop`.

  A stack of `steps_per_call` when that many fit before the stop, else one. The step that ends
  at a diagnosed stop always runs alone (its own jitted step, which measures the alignment). So
  training compiles three step functions at most (single, diagnosed, stacked), whatever the
  schedule of stops.
  """
  if steps_per_call > 1 and step + steps_per_call <= stop - diagnose_at_stop:
    return steps_per_call
  return 1


class Call(NamedTuple):
  """One call of the trainer: `steps` steps towards the next `stop` (a logging, evaluation or
  checkpoint step)."""
  steps: int
  stop: int
  logs: bool  # metrics are logged at `stop`
  diagnosed: bool  # the lone step that ends a logging interval and measures the alignment


def call_schedule(start: int, total_steps: int, stop_intervals: list[int],
                  log_every_steps: int, steps_per_call: int, diagnostics: bool) -> Iterator[Call]:
  """The trainer's calls from `start` to the run's end. They depend only on the step and the
  config, so a resumed run makes the calls of an uninterrupted one."""
  step = start
  while step < total_steps:
    stop = min((step // every + 1) * every for every in stop_intervals)
    logs = stop % log_every_steps == 0 or stop == total_steps
    diagnose_at_stop = logs and diagnostics
    count = steps_in_next_call(step, stop, steps_per_call, diagnose_at_stop)
    yield Call(count, stop, logs, diagnose_at_stop and step + count == stop)
    step += count


def lone_steps_diagnose(total_steps: int, stop_intervals: list[int], log_every_steps: int,
                        steps_per_call: int, diagnostics: bool) -> bool:
  """Whether the steps that run alone and are not diagnosed take the diagnosing program.

  It computes the same step bit for bit (LeNet-5, every MNIST method: checked) and measures the
  alignment besides, ≈ 2 ms more a step on LeNet-5. A run that diagnoses, stacks its calls and
  has no more lone steps than one stack holds (the remainder before the last stop of a
  one-epoch MNIST run: 8) then compiles one step program fewer: the command 0.3 s faster warm,
  1.6–3 s cold (BUILD_NOTES.md, "fajax against PyTorch on one CPU"). Counted over
  the whole run from step 0, so that a resumed run takes the programs of an uninterrupted one.
  """
  if not diagnostics or steps_per_call == 1:
    return False
  lone = 0
  for call in call_schedule(0, total_steps, stop_intervals, log_every_steps, steps_per_call,
                            diagnostics):
    lone += call.steps == 1 and not call.diagnosed
    if lone > steps_per_call:
      return False
  return True


def check_divergence(diverged_steps, diverged_checks, checks: list[str], replicas,
                     reported: set, kept_step: int | None, say) -> None:
  """Says once which replicas diverged (they stay frozen, the others go on); raises
  DivergenceError, naming the step and where, when every replica has."""
  diverged = [i for i, s in enumerate(diverged_steps) if s >= 0]
  for i in diverged:
    if i not in reported and len(diverged) < len(replicas):
      say(f'{replicas[i].describe()} diverged at step {int(diverged_steps[i])}: NaN or Inf in '
          f'{checks[int(diverged_checks[i])]}; it stays frozen there, the others go on')
    reported.add(i)
  if diverged and len(diverged) == len(replicas):
    first = min(diverged, key=lambda i: diverged_steps[i])
    raise DivergenceError(
        f'training diverged at step {int(diverged_steps[first])}: NaN or Inf in '
        f'{checks[int(diverged_checks[first])]}; '
        + (f'the last good checkpoint (step {kept_step}) is kept. '
           if kept_step is not None else '')
        + 'Lower the learning rate or check the data, then run again.'
    )


def _fetch_per_step(per_call: list[dict], num_replicas: int) -> dict:
  """Metrics of several calls (one step's [replica] or a stack's [step, replica]) as one
  [step, replica] array a key."""
  fetched = jax.device_get(per_call)
  return {k: np.concatenate([np.reshape(m[k], (-1, num_replicas)) for m in fetched])
          for k in fetched[0]}


def format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes // 60}:{minutes % 60:02d}:{seconds:02d}'


def describe_replicas(replicas, config) -> str:
  """The line a run with replicas starts with: how many, and what they vary."""
  seeds = sorted({r.seed for r in replicas})
  parts = [f'seeds {seeds[0]}–{seeds[-1]}' if len(seeds) > 1 else f'seed {seeds[0]}']
  parts += [f"{name} {', '.join(f'{v:g}' for v in values)}"
            for name, values in replicas_lib.swept(config).items()]
  return f"{len(replicas)} replicas in one program: {' × '.join(parts)}"


def _replica_lines(experiment, step_metrics: dict, state) -> list[dict]:
  """One metrics.jsonl record per replica: its index, seed, hyper-parameters and metrics."""
  diverged_steps, diverged_checks = jax.device_get((state.diverged_step, state.diverged_check))
  lines = []
  for r in experiment.replicas:
    line = {'replica': r.index, 'seed': r.seed,
            **{f'hparams/{k}': v for k, v in r.hyperparams.items()},
            **{k: float(v[r.index]) for k, v in step_metrics.items()}}
    if diverged_steps[r.index] >= 0:
      line.update(diverged_step=int(diverged_steps[r.index]),
                  diverged_in=experiment.health_checks[int(diverged_checks[r.index])])
    lines.append(line)
  return lines


def _mean_over_healthy(lines: list[dict], key: str) -> tuple[float, float]:
  values = [line[key] for line in lines if 'diverged_step' not in line]
  return replicas_lib.mean_and_std(values)


def _summary(lines: list[dict], key: str, digits: int = 4) -> str:
  mean, std = _mean_over_healthy(lines, key)
  return f'{mean:.{digits}f}' if len(lines) == 1 else f'{mean:.{digits}f} ± {std:.{digits}f}'


def train(config: ml_collections.ConfigDict, workdir: str | None = None, *, model=None,
          data=None) -> dict:
  """Trains and evaluates `config` (with the caller's `model` / `data`, if given; see
  `fajax.build`), every replica at once; returns the final metrics.

  They are 'step', the means over the replicas that did not diverge of 'eval/loss' and
  'eval/top1_error' (and 'validation/...'), and 'replicas': one record per replica, as in
  metrics.jsonl. With a workdir, writes config.json, metrics.jsonl and checkpoints there, and
  resumes from the latest checkpoint when one exists; without one, writes nothing. One run at a
  time holds a workdir (`fajax.workdir_lock`): a second raises WorkdirInUse.
  """
  # Every process trains; process 0 alone writes the log and prints.
  is_main = jax.process_index() == 0
  console = progress.Console(sys.stdout if is_main else None)
  with workdir_lock.held(workdir, console.say):
    return _train(config, workdir, model, data, is_main, console)


def _train(config, workdir, model, data, is_main: bool, console: progress.Console) -> dict:
  workdir_lib.check_resumable(workdir, describe_caller_objects(model, data))
  build_config = config
  if config.init_from and workdir_lib.checkpoint_steps(workdir):
    # The run resumes from its own checkpoint: the file it started from is not read, and may
    # be gone.
    build_config = config.copy_and_resolve_references()
    build_config.init_from = ''
  experiment = build(build_config, model=model, data=data)
  total_steps, schedule = experiment.total_steps, experiment.schedule
  if len(experiment.replicas) > 1:
    console.say(describe_replicas(experiment.replicas, config))
  profiler = profiling.StepProfiler(config.profile_steps, workdir)
  run = workdir_lib.Workdir(workdir, config, experiment.caller_objects, is_main,
                            config.checkpoints_to_keep)
  faults = faults_lib.Faults()
  try:
    state = run.resume(experiment.state, console.say)
    step = int(state.step[0])
    batches = experiment.train_batches(step)
    eval_every = experiment.steps_per_epoch * config.eval_every_epochs
    # Steps after which something is logged, evaluated or saved: "stops".
    stop_intervals = [config.log_every_steps, eval_every, total_steps] + (
        [config.checkpoint_every_steps] if run.saves_checkpoints else [])
    lone_step = (experiment.diagnose_step if lone_steps_diagnose(
        total_steps, stop_intervals, config.log_every_steps, config.steps_per_call,
        config.diagnostics) else experiment.train_step)
    # Per call: its steps' loss and error, [step, replica] or [replica]; after a resume between
    # logging steps, those of the steps before it.
    pending = run.restore_interval(step)
    reported: set[int] = set()  # replicas whose divergence was said
    interval_start, interval_step = time.perf_counter(), step
    lines = []
    calls = 0
    # A signal stops the run only where it can be resumed from: with a workdir.
    with preemption.StopRequest(active=run.saves_checkpoints) as stop_request:
      for call in call_schedule(step, total_steps, stop_intervals, config.log_every_steps,
                                config.steps_per_call, config.diagnostics):
        stop, count = call.stop, call.steps
        profiler.before_call(step)
        if count == 1:
          # The last step of each logging interval also measures the layers' alignment.
          step_fn = experiment.diagnose_step if call.diagnosed else lone_step
          state, metrics = step_fn(state, *experiment.put_batch(*next(batches)))
        else:
          images, labels = zip(*(next(batches) for _ in range(count)))
          stacked = experiment.put_batch(datasets.stack_arrays(images),
                                         datasets.stack_arrays(labels), stacked=True)
          state, metrics = experiment.train_steps(state, *stacked)
        pending.append({k: metrics[k] for k in ('train/loss', 'train/top1_error')})
        step, calls = step + count, calls + 1
        profiler.after_call(step, state)
        faults.at('step', step, step - count)
        # Calls are those of an uninterrupted run (`call_schedule`), so a run stopped
        # after any of them resumes bit for bit.
        preempted = stop_request.due(calls)
        if step < stop and not preempted:
          continue
        at_stop = step == stop
        log_due = call.logs and at_stop
        checkpoint_due = run.saves_checkpoints and (preempted or at_stop and (
            step % config.checkpoint_every_steps == 0 or step == total_steps))

        if log_due or checkpoint_due:  # never log or save a run whose every replica diverged
          diverged_steps, diverged_checks = jax.device_get(
              (state.diverged_step, state.diverged_check))
          check_divergence(diverged_steps, diverged_checks, experiment.health_checks,
                           experiment.replicas, reported, run.latest_checkpoint_step(),
                           console.say)
        step_metrics = {}
        if log_due:
          fetched = _fetch_per_step(pending, len(experiment.replicas))
          pending = []
          step_metrics.update({k: v.mean(axis=0) for k, v in fetched.items()})
          step_metrics.update({k: v for k, v in jax.device_get(metrics).items()
                               if k.startswith('align/')})
          step_metrics['train/learning_rate'] = np.array(
              [schedule(step - 1, r.hyperparams['learning_rate']) for r in experiment.replicas])
        evaluated = at_stop and (step % eval_every == 0 or step == total_steps)
        if evaluated:
          step_metrics.update(experiment.evaluate(state))
          faults.at('eval', step)
        if step_metrics:
          lines = _replica_lines(experiment, step_metrics, state)
          run.write_metrics(step, lines)
        if log_due:
          now = time.perf_counter()
          rate = (step - interval_step) / (now - interval_start)
          interval_start, interval_step = now, step
          console.progress(step, total_steps,
                           f'{rate:.1f} steps/s | '
                           f'ETA {format_duration((total_steps - step) / rate)} | '
                           f"loss {_summary(lines, 'train/loss')} | "
                           f"error {_summary(lines, 'train/top1_error', 2)}%")
        if evaluated:
          console.say(
              f"step {step}/{total_steps} | eval loss {_summary(lines, 'eval/loss')} | "
              f"eval error {_summary(lines, 'eval/top1_error', 2)}%"
              + (f" | validation error {_summary(lines, 'validation/top1_error', 2)}%"
                 if config.validation_examples else ''))
        if checkpoint_due:
          run.save(step, state, _fetch_per_step(pending, len(experiment.replicas))
                   if pending else None)
          faults.at('checkpoint', step)
        if preempted:
          raise preemption.Preempted(stop_request.signal_name, step)

    if not lines or 'eval/loss' not in lines[0]:  # resumed after the last step: evaluate
      lines = _replica_lines(experiment, experiment.evaluate(state), state)
  finally:
    profiler.stop()
    console.end_bar()  # W&B's and MLflow's closing words, or an error, start a line of their own
    run.close()
  faults.at('final')  # every checkpoint written, the final metrics not yet returned
  final = {'step': step, 'replicas': lines}
  for key in lines[0]:
    if key.startswith(('eval/', 'validation/')):
      final[key] = _mean_over_healthy(lines, key)[0]
  return final
