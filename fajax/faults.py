"""Faults injected at exact points of a run, for tests of what survives them.

    FAJAX_FAULT=kill@step:40          SIGKILL after the call that reaches step 40
    FAJAX_FAULT=term@step:40          SIGTERM there (the preemption path, `fajax.preemption`)
    FAJAX_FAULT=kill@checkpoint:50    SIGKILL while the checkpoint of step 50 is being written
    FAJAX_FAULT=raise@eval:100        an exception after evaluating step 100, before its metrics
    FAJAX_FAULT=kill@final            SIGKILL after the last step, before the final metrics

A fault fires once per process start. Unset, every `at` call is a dictionary lookup.
"""

import os
import signal

ENV = 'FAJAX_FAULT'
ACTIONS = ('kill', 'term', 'raise')
POINTS = ('step', 'checkpoint', 'eval', 'final')


class InjectedFault(RuntimeError):
  """Raised by a `raise@...` fault."""


def _parse(spec: str) -> tuple[str, str, int | None]:
  action, _, where = spec.partition('@')
  point, _, step = where.partition(':')
  if action not in ACTIONS or point not in POINTS or (step == '') != (point == 'final'):
    raise ValueError(f'{ENV}={spec}: give ACTION@POINT:STEP (or ACTION@final), ACTION one of '
                     f'{", ".join(ACTIONS)}, POINT one of {", ".join(POINTS)}')
  return action, point, int(step) if step else None


class Faults:
  """The fault `$FAJAX_FAULT` names, read when the run starts."""

  def __init__(self, spec: str | None = None):
    spec = os.environ.get(ENV, '') if spec is None else spec
    self._fault = _parse(spec) if spec else None

  def at(self, point: str, step: int | None = None, previous_step: int | None = None) -> None:
    """Fires the fault if it is set for `point` at `step`: for 'step', the call that went
    from `previous_step` to `step` reached it."""
    if self._fault is None:
      return
    action, fault_point, fault_step = self._fault
    if point != fault_point:
      return
    if point == 'step':
      assert fault_step is not None and previous_step is not None and step is not None
      if not previous_step < fault_step <= step:
        return
    elif fault_step is not None and step != fault_step:
      return
    self._fault = None
    if action == 'raise':
      raise InjectedFault(f'injected fault at {point} {step}')
    os.kill(os.getpid(), signal.SIGKILL if action == 'kill' else signal.SIGTERM)
