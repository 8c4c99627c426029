"""The progress of training: one bar redrawn in place on a terminal, plain lines elsewhere."""

import io
import re
import sys

from flax import nnx

import fajax
from fajax import progress
from tests.fixtures import TinyMLP, tiny_config, tiny_data

CLEAR_LINE = '\r\x1b[K'
TRAIN_DETAILS = r'[\d.]+ steps/s \| ETA \d:\d\d:\d\d \| loss \d\.\d{4} \| error [\d.]+%'
EVAL_LINE = r'step (\d)/8 \| eval loss \d\.\d{4} \| eval error [\d.]+%'


class Terminal(io.StringIO):
  """What the loop prints to, taken for an interactive terminal."""

  def isatty(self):
    return True


def screen(text: str) -> list[str]:
  """The lines a terminal shows for `text`: each keeps what follows its last erase."""
  return [line.split(CLEAR_LINE)[-1] for line in text.split('\n')]


def _train():
  # tiny_config: 8 steps, logged every 2, evaluated every 4 (an epoch of tiny_data).
  fajax.train(tiny_config('fa'), model=TinyMLP(rngs=nnx.Rngs(0)), data=tiny_data())


def test_on_a_terminal_training_is_one_bar_redrawn_and_evaluations_stay_as_lines(monkeypatch):
  terminal = Terminal()
  monkeypatch.setattr(sys, 'stdout', terminal)
  monkeypatch.setenv('COLUMNS', '200')
  _train()
  shown = screen(terminal.getvalue())
  assert [re.fullmatch(EVAL_LINE, line).group(1) for line in shown[:2]] == ['4', '8']
  assert re.fullmatch(rf'step 8/8 █{{30}} 100% \| {TRAIN_DETAILS}', shown[2])
  assert shown[3:] == ['']  # the bar's line is ended: what prints next starts a line
  # Each logging step redrew the bar, in place.
  drawn = re.findall(r'\r\x1b\[Kstep (\d)/8 (█*)░*', terminal.getvalue())
  assert [(step, len(filled)) for step, filled in drawn][:2] == [('2', 7), ('4', 15)]


def test_elsewhere_each_logging_step_prints_a_line(capsys):
  _train()
  lines = capsys.readouterr().out.splitlines()
  assert [re.fullmatch(rf'step (\d)/8 \| {TRAIN_DETAILS}', line) is not None
          or re.fullmatch(EVAL_LINE, line) is not None for line in lines] == [True] * 6
  assert [line.split(' |')[0] for line in lines] == [
      'step 2/8', 'step 4/8', 'step 4/8', 'step 6/8', 'step 8/8', 'step 8/8']


def test_a_bar_fits_a_narrow_terminal(monkeypatch):
  monkeypatch.setenv('COLUMNS', '40')
  terminal = Terminal()
  console = progress.Console(terminal)
  console.progress(50, 100, '10.0 steps/s | ETA 0:00:05 | loss 0.1234 | error 1.00%')
  console.say('a warning')
  shown = screen(terminal.getvalue())
  assert shown[0] == 'a warning'
  assert shown[1] == 'step 50/100 █████░░░░░ 50% | 10.0 steps'  # 39 columns, 10 of bar
