"""CIFAR-10, the DFA paper's conv net, dense feedback alignment: every hidden layer gets feedback from all layers above.

    fajax train --config=cifar10_1_densefa --workdir=runs/cifar10_1_densefa
"""

from fajax.configs import cifar10_1


def get_config():
  config = cifar10_1.get_config('densefa')
  # Its long-range matrices take 8.3 GB (conv1 alone receives from conv3: 16384 × 98304).
  config.direct_feedback_memory_budget_mb = 12288.0
  return config
