"""The deliberate bugs of `tests/deliberate_bugs.py` still fit the code they break."""

import pytest

from tests import deliberate_bugs


@pytest.mark.parametrize('bug', deliberate_bugs.BUGS, ids=lambda bug: bug.name)
def test_each_deliberate_bug_has_one_place_to_go(bug):
  source = (deliberate_bugs.REPO / bug.path).read_text()
  assert source.count(bug.correct) == 1
  assert bug.tests[0].startswith('tests/') and (deliberate_bugs.REPO / bug.tests[0]).exists()
