"""Shows that the suite catches real faults: makes each deliberate bug, one at a time, in a copy
of the checkout, and runs the tests that should catch it; each must fail.

    FAJAX_DATA_DIR=../shared/data python tests/deliberate_bugs.py

Prints one line per bug (the tests that failed, or CAUGHT NOTHING) and exits 1 if any bug went
unnoticed. The copy leaves the checkout untouched. BUILD_NOTES.md, "Reliability", records a run.
"""

import dataclasses
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
# Not part of the code under test, and large or generated.
SKIPPED = shutil.ignore_patterns('.git', 'runs', '__pycache__', '*.egg-info', '.pytest_cache')


@dataclasses.dataclass(frozen=True)
class Bug:
  name: str
  path: str  # the file the bug goes into
  correct: str  # text that occurs exactly once in it
  wrong: str  # what replaces it
  tests: tuple[str, ...]  # pytest arguments: the tests that should catch it


BUGS = (
    Bug('a flipped sign in the feedback kernel', 'fajax/kernel.py',
        '  return dx, dkernel, None', '  return -dx, dkernel, None',
        ('tests/kernel_test.py',)),
    Bug('W used in place of B under FA', 'fajax/kernel.py',
        '  return op(x, kernel), (x, feedback)', '  return op(x, kernel), (x, kernel)',
        ('tests/kernel_test.py',)),
    Bug('a dropped E/I constraint', 'fajax/constraints.py',
        'project(w, state.positive[layer]) if layer in state.positive else w', 'w',
        ('tests/constraints_test.py',)),
    Bug('a B that a rule updates but never writes back', 'fajax/steps.py',
        '      feedback=feedback,', '      feedback=state.feedback,',
        ('tests/steps_test.py', '-k', 'usf_sn_norm or bp_keeps')),
    Bug('a resume that skips one batch', 'fajax/loop.py',
        '    batches = experiment.train_batches(step)',
        '    batches = experiment.train_batches(step + (step > 0))',
        ('tests/workdir_test.py', '-k', 'resumes_to_the_uninterrupted')),
)


def check(bug: Bug, copy: pathlib.Path) -> list[str]:
  """Makes `bug` in `copy`, runs its tests, undoes it; the tests that failed."""
  path = copy / bug.path
  correct_text = path.read_text()
  if correct_text.count(bug.correct) != 1:
    raise SystemExit(f'{bug.path} no longer holds {bug.correct!r} exactly once: update {__file__}')
  path.write_text(correct_text.replace(bug.correct, bug.wrong))
  try:
    result = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-x', '-p', 'no:cacheprovider', *bug.tests],
        cwd=copy, capture_output=True, text=True)
  finally:
    path.write_text(correct_text)
  if result.returncode not in (0, 1):  # 1: tests failed; anything else: they could not run
    raise SystemExit(f'{bug.name}: pytest exited {result.returncode}\n{result.stdout[-3000:]}')
  return re.findall(r'^FAILED (\S+)', result.stdout, re.MULTILINE)


def main() -> int:
  missed = 0
  with tempfile.TemporaryDirectory() as folder:
    copy = pathlib.Path(folder) / 'checkout'
    shutil.copytree(REPO, copy, ignore=SKIPPED)
    for bug in BUGS:
      start = time.perf_counter()
      failed = check(bug, copy)
      seconds = time.perf_counter() - start
      missed += not failed
      print(f"{bug.name}: {'caught by ' + ', '.join(failed) if failed else 'CAUGHT NOTHING'} "
            f'({seconds:.0f} s)', flush=True)
  return 1 if missed else 0


if __name__ == '__main__':
  os.environ.setdefault('FAJAX_DATA_DIR', str(REPO.parent / 'shared' / 'data'))
  sys.exit(main())
