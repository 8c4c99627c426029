"""The MNIST column: LeNet-5 on MNIST, one training protocol for every method.

SGD with momentum 0.9, batch 128, learning rate 0.05 with cosine decay over 20 epochs,
weight decay 5e-4 on the kernels. The paper's protocol is not public (SPEC §2); this one is a
common LeNet-5 recipe that lets BP reach under 1% error, and it is the same for every method so
that the columns compare rules, not tuning.
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.dataset = 'mnist'
  config.model = 'lenet5'
  config.optimizer = 'sgd'
  config.learning_rate = 0.05
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.batch_size = 128
  config.num_epochs = 20
  return config
