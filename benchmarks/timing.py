"""What the benchmarks share: timing jitted training calls in interleaved rounds, and writing
the results.

Interleaving matters on these machines: their speed drifts by ±30% over minutes, so every
variant is timed a little in each round and compared within the round.
"""

import json
import os
import statistics
import time
from typing import Any, Callable, Hashable, NamedTuple

import jax


class Call(NamedTuple):
  """A jitted `(state, *args) -> (state, metrics)` as the trainer calls it: `state` is donated
  and replaced by the output. Calls that share `state_key` take turns on one state (a method's
  plain and diagnosing steps); `steps_per_call` > 1 for a call that scans over stacked batches."""
  jitted: Callable
  args: tuple
  state_key: Hashable
  steps_per_call: int = 1


def time_in_rounds(calls: dict, states: dict, *, steps: int, rounds: int, warmup: int,
                   on_round: Callable[[int], None] | None = None) -> dict:
  """Key of `calls` → the median seconds per training step of each round, after `warmup`
  untimed steps (compiles included). `states` maps each state_key to its state and is updated.
  Each call runs about steps / rounds steps per round, at least one call."""

  def run(call: Call, count: int) -> list[float]:
    times = []
    for _ in range(max(count // call.steps_per_call, 1)):
      start = time.perf_counter()
      states[call.state_key], metrics = call.jitted(states[call.state_key], *call.args)
      jax.block_until_ready((states[call.state_key], metrics))
      times.append((time.perf_counter() - start) / call.steps_per_call)
    return times

  for call in calls.values():
    run(call, warmup)
  medians: dict = {key: [] for key in calls}
  for k in range(rounds):
    if on_round:
      on_round(k)
    for key, call in calls.items():
      medians[key].append(statistics.median(run(call, max(steps // rounds, 1))))
  return medians


def publish(markdown: str, result: Any, out: str, name: str) -> None:
  """Prints the tables; with a folder `out`, also writes them to <name>.md and everything to
  <name>.json there."""
  print(markdown)
  if out:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f'{name}.json'), 'w') as f:
      json.dump(result, f, indent=2)
    with open(os.path.join(out, f'{name}.md'), 'w') as f:
      f.write(markdown)
