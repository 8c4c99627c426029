"""What a run tells the person watching it: the progress of training, and lines that stay.

On an interactive terminal the progress is one line redrawn in place: a bar with steps/s, the
ETA and the last loss. Anywhere else (a log file, a pipe, a test) each logging step prints a
line of its own, `step N/T | ...`, which logs and tests read.

    console = Console(sys.stdout)           # None: a process that prints nothing
    console.say('Resumed from ...')         # a line that stays, above the bar
    console.progress(step, total_steps, '12.5 steps/s | ETA 0:01:00 | loss 0.1234')
    console.end_bar()                        # before anything else prints to the terminal
"""

import shutil
from typing import TextIO

_BAR_WIDTH = 30
_MIN_BAR_WIDTH = 10
_CLEAR_LINE = '\r\x1b[K'  # back to the line's start, erase it


def bar(done: int, total: int, width: int) -> str:
  """`width` cells, the first done/total of them filled."""
  filled = width * done // total
  return '█' * filled + '░' * (width - filled)


class Console:
  """Prints a run's lines to `stream` (None: nowhere), the progress as a bar when `stream` is an
  interactive terminal."""

  def __init__(self, stream: TextIO | None):
    self.stream = stream
    self.terminal = stream if stream is not None and stream.isatty() else None  # draws the bar
    self.bar = ''  # the bar on screen, '' when none

  def say(self, line: str) -> None:
    """Prints `line` on a line of its own, the bar (if any) drawn again below it."""
    if self.stream is None:
      return
    self.stream.write(f'{_CLEAR_LINE if self.bar else ""}{line}\n{self.bar}')
    self.stream.flush()

  def progress(self, step: int, total_steps: int, details: str) -> None:
    """Training reached `step` of `total_steps`; `details`: its rate, ETA, loss, ...."""
    if self.terminal is None:
      self.say(f'step {step}/{total_steps} | {details}')
      return
    head, tail = f'step {step}/{total_steps} ', f' {100 * step // total_steps}% | {details}'
    # A line as wide as the terminal wraps, and '\r' would then redraw only its last part: the
    # bar narrows to fit, down to a minimum, and the details' end is cut.
    width = shutil.get_terminal_size().columns - 1
    bar_width = min(_BAR_WIDTH, max(width - len(head) - len(tail), _MIN_BAR_WIDTH))
    self.bar = f'{head}{bar(step, total_steps, bar_width)}{tail}'[:width]
    self.terminal.write(_CLEAR_LINE + self.bar)
    self.terminal.flush()

  def end_bar(self) -> None:
    """Leaves the bar on screen as it stands and moves to the next line, where what prints next
    (a warning, an error, another run) starts."""
    if self.terminal is not None and self.bar:
      self.terminal.write('\n')
      self.terminal.flush()
      self.bar = ''
