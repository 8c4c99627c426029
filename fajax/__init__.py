"""fajax: feedback-alignment research on deep convolutional networks, in JAX and Flax NNX."""

import ml_collections

from fajax import rules
from fajax.kernel import conv, dense, feedback_op
from fajax.layers import Feedback, FeedbackConv, FeedbackDense


def train(config: ml_collections.ConfigDict, workdir: str | None = None) -> dict:
  """Trains and evaluates `config`; returns the final metrics (with 'eval/top1_error').

  With a workdir, writes config.json, metrics.jsonl and checkpoints there and resumes from the
  latest checkpoint; without one, writes nothing.
  """
  from fajax import training  # pylint: disable=g-import-not-at-top

  return training.train_and_evaluate(config, workdir)


__all__ = [
    'Feedback', 'FeedbackConv', 'FeedbackDense', 'conv', 'dense', 'feedback_op', 'rules',
    'train',
]
