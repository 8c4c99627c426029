"""A `jax.profiler` trace of chosen training steps: `config.profile_steps = 'START:END'` traces
the steps after step START up to step END, into `<workdir>/profile/`: TensorBoard's profile
plugin reads its `plugins/profile/<run>/*.xplane.pb` (`tensorboard --logdir WORKDIR/profile`),
and Perfetto (ui.perfetto.dev) opens its `perfetto_trace.json.gz`.

The trace starts and stops between calls of the jitted step, so with `config.steps_per_call`
above 1 it covers the whole calls that hold those steps.
"""

import os

import jax

from fajax.errors import ConfigError

FOLDER = 'profile'


def parse(spec: str) -> tuple[int, int] | None:
  """(START, END) from 'START:END'; None for ''. ConfigError for anything else."""
  if not spec:
    return None
  start, colon, end = spec.partition(':')
  try:
    steps = int(start), int(end)
  except ValueError:
    steps = None
  if not colon or steps is None or not 0 <= steps[0] < steps[1]:
    raise ConfigError(f"profile_steps must be 'START:END' with 0 <= START < END, got {spec!r}")
  return steps


class StepProfiler:
  """Starts the trace before the first call past step START, stops it after the call that
  reaches step END (or when the run ends first)."""

  def __init__(self, spec: str, workdir: str | None):
    self.steps = parse(spec)
    if self.steps and not workdir:
      raise ConfigError('profile_steps writes its trace into the workdir: give a workdir')
    self.folder = os.path.join(workdir, FOLDER) if workdir else None
    self.tracing = False

  def before_call(self, step: int) -> None:
    if self.steps and not self.tracing and self.steps[0] <= step < self.steps[1]:
      jax.profiler.start_trace(self.folder, create_perfetto_trace=True)
      self.tracing = True

  def after_call(self, step: int, outputs) -> None:
    """`outputs`: the call's results, waited for so that the trace holds their computation."""
    if self.tracing and self.steps and step >= self.steps[1]:
      self.stop(outputs)

  def stop(self, outputs=None) -> None:
    if self.tracing:
      jax.block_until_ready(outputs)
      jax.profiler.stop_trace()
      self.tracing = False
