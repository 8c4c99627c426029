"""fajax: feedback-alignment research on deep convolutional networks, in JAX and Flax NNX.

    experiment = fajax.build(config, model=None, data=None)   # everything training needs
    metrics = fajax.train(config, workdir=None, model=None, data=None)   # build + the loop
    model = fajax.to_feedback(plain_nnx_model, rngs=nnx.Rngs(feedback=0))   # feedback layers
"""

import importlib
import typing

from fajax import lean_import

# flax.nnx imports IPython (≈ 0.6 s) only to ask whether it runs inside an IPython shell, which
# it cannot be doing where IPython is not imported yet; the answer is the same without it.
lean_import.import_without('flax.nnx', 'IPython')

from fajax import rules  # pylint: disable=g-import-not-at-top,wrong-import-position
from fajax.convert import to_feedback
from fajax.direct import DirectFeedback
from fajax.general_layers import FeedbackEinsum, FeedbackLinearGeneral
from fajax.kernel import conv, dense, feedback_op
from fajax.layers import Feedback, FeedbackConv, FeedbackDense

# Loaded on first use: the trainer pulls in the data pipelines, Orbax and TensorBoard, which
# `import fajax` for the layers and rules does not need.
_LAZY = {'build': 'fajax.experiment', 'Experiment': 'fajax.experiment', 'train': 'fajax.loop'}
if typing.TYPE_CHECKING:  # the same names, for type checkers and the API reference
  from fajax.experiment import Experiment, build
  from fajax.loop import train


def __getattr__(name):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
