"""The MNIST column: LeNet-5 on MNIST, one training protocol for every method.

SGD with momentum 0.9, batch 32, learning rate 0.02 with cosine decay to 0 over 20 epochs,
weight decay 5e-4 on the kernels, kernels (and FA's B) drawn from U(±1/√fan_in). The paper's
protocol is not public (SPEC §2). This one is the same for every method, so the column compares
rules, not tuning; it was chosen on one-epoch runs (BUILD_NOTES.md) as the setting where FA
trains stably and BP and uSF do well, since larger steps or He-scaled weights make FA diverge.
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.dataset = 'mnist'
  config.model = 'lenet5'
  config.optimizer = 'sgd'
  config.learning_rate = 0.02
  config.momentum = 0.9
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.kernel_init = 'fan_in_uniform'
  config.batch_size = 32
  config.num_epochs = 20
  return config
