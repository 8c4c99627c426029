"""The training loop: `train` = `fajax.build` + one linear walk from step to step.

Between "stops" (a logging, evaluation or checkpoint step) the loop may run several steps per
call (`config.steps_per_call`, stacked batches in one `lax.scan`); the step that ends a logging
interval runs alone, as the diagnosing step. The schedule of calls depends only on the step and
the config, so a resumed run makes the same calls as an uninterrupted one, bit for bit.
"""

import time

import jax
import ml_collections
import numpy as np

from fajax import host_memory
from fajax.errors import DivergenceError
from fajax import workdir as workdir_lib
from fajax.experiment import build
from fajax.experiment import describe_caller_objects


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


def check_health(codes, first_step: int, checks: list[str], kept_step: int | None) -> None:
  """Raises DivergenceError at the first step where a value of `checks` went non-finite."""
  for offset, code in enumerate(codes):
    if code >= 0:
      raise DivergenceError(
          f'training diverged at step {first_step + offset}: NaN or Inf in '
          f'{checks[int(code)]}; '
          + (f'the last good checkpoint (step {kept_step}) is kept. '
             if kept_step is not None else '')
          + 'Lower the learning rate or check the data, then run again.'
      )


def _fetch_per_step(per_call: list[dict]) -> dict:
  """Metrics of several calls (scalars of one step or stacks of several) as one array a key."""
  fetched = jax.device_get(per_call)
  return {k: np.concatenate([np.atleast_1d(m[k]) for m in fetched]) for k in fetched[0]}


def _stack(batches):
  stack = np.stack if isinstance(batches[0], np.ndarray) else jax.numpy.stack
  return stack(batches)


def format_duration(seconds: float) -> str:
  minutes, seconds = divmod(int(seconds), 60)
  return f'{minutes // 60}:{minutes % 60:02d}:{seconds:02d}'


def train(config: ml_collections.ConfigDict, workdir: str | None = None, *, model=None,
          data=None) -> dict:
  """Trains and evaluates `config` (with the caller's `model` / `data`, if given; see
  `fajax.build`); returns the final metrics (with 'step' and 'eval/top1_error').

  With a workdir, writes config.json, metrics.jsonl and checkpoints there, and resumes from the
  latest checkpoint when one exists; without one, writes nothing.
  """
  host_memory.retain_freed_buffers()
  workdir_lib.check_resumable(workdir, describe_caller_objects(model, data))
  experiment = build(config, model=model, data=data)
  total_steps, schedule = experiment.total_steps, experiment.schedule
  # Every process trains; process 0 alone writes the log and prints.
  is_main = jax.process_index() == 0
  say = (lambda line: print(line, flush=True)) if is_main else (lambda line: None)
  run = workdir_lib.Workdir(workdir, config, experiment.caller_objects, is_main,
                            config.checkpoints_to_keep)
  try:
    state = run.resume(experiment.state, say)
    step = int(state.step)
    batches = experiment.data.train_batches(
        config.batch_size, config.seed, start_step=step, num_steps=total_steps - step,
        shard_index=jax.process_index(), shard_count=jax.process_count(),
    )
    eval_every = experiment.steps_per_epoch * config.eval_every_epochs
    # Steps after which something is logged, evaluated or saved: "stops".
    stop_intervals = [config.log_every_steps, eval_every, total_steps] + (
        [config.checkpoint_every_steps] if run.saves_checkpoints else [])
    pending = []  # per call: its steps' loss, error and health, stacked
    interval_start, interval_step = time.perf_counter(), step
    eval_metrics = {}
    while step < total_steps:
      # The next stop; the calls before it may run stacked.
      stop = min((step // every + 1) * every for every in stop_intervals)
      log_due = stop % config.log_every_steps == 0 or stop == total_steps
      # The last step of each logging interval also measures the layers' alignment.
      diagnose_at_stop = log_due and config.diagnostics
      count = steps_in_next_call(step, stop, config.steps_per_call, diagnose_at_stop)
      if count == 1:
        step_fn = (experiment.diagnose_step if diagnose_at_stop and step + 1 == stop
                   else experiment.train_step)
        state, metrics = step_fn(state, *experiment.put_batch(*next(batches)))
      else:
        images, labels = zip(*(next(batches) for _ in range(count)))
        state, metrics = experiment.train_steps(
            state, *experiment.put_batch(_stack(images), _stack(labels), stacked=True))
      pending.append({k: metrics[k] for k in ('train/loss', 'train/top1_error', 'health')})
      step += count
      if step < stop:
        continue
      checkpoint_due = run.saves_checkpoints and (
          step % config.checkpoint_every_steps == 0 or step == total_steps)

      if log_due or checkpoint_due:  # never log or save a diverged state
        pending = [_fetch_per_step(pending)]
        health = pending[0]['health']
        check_health(health, step - len(health) + 1, experiment.health_checks,
                     run.latest_checkpoint_step())
      line = {}
      if log_due:
        means = {k: float(np.mean(pending[0][k])) for k in ('train/loss', 'train/top1_error')}
        pending = []
        alignment = {k: float(v) for k, v in jax.device_get(metrics).items()
                     if k.startswith('align/')}
        line.update(means, **alignment, **{'train/learning_rate': float(schedule(step - 1))})
        now = time.perf_counter()
        rate = (step - interval_step) / (now - interval_start)
        interval_start, interval_step = now, step
        say(
            f'step {step}/{total_steps} | {rate:.1f} steps/s | '
            f'ETA {format_duration((total_steps - step) / rate)} | '
            f"loss {means['train/loss']:.4f} | error {means['train/top1_error']:.2f}%"
        )
      if step % eval_every == 0 or step == total_steps:
        eval_metrics = experiment.evaluate(state)
        line.update(eval_metrics)
        say(
            f"step {step}/{total_steps} | eval loss {eval_metrics['eval/loss']:.4f} | "
            f"eval error {eval_metrics['eval/top1_error']:.2f}%"
        )
      if line:
        run.write_metrics(step, line)
      if checkpoint_due:
        run.save(step, state)

    if not eval_metrics:  # resumed after the last step: nothing trained, report the result
      eval_metrics = experiment.evaluate(state)
  finally:
    run.close()
  return {'step': step, **eval_metrics}
