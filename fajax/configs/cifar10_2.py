"""The CIFAR-10 2 column: ResNet-20 on CIFAR-10, flip + crop.

Protocol of He et al. 2016 (§4.2, CIFAR-10): SGD momentum 0.9, weight decay 1e-4, batch 128,
learning rate 0.1, 64k iterations (≈ 164 epochs). Deviation: cosine decay instead of the two
÷10 steps at 32k and 48k iterations (one schedule shape across the table).
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.column = 'cifar10_2'
  config.dataset = 'cifar10'
  config.model = 'resnet20'
  config.optimizer = 'sgd'
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.lr_schedule = 'cosine'
  config.batch_size = 128
  config.num_epochs = 164
  config.eval_batch_size = 500
  config.kernel_init = 'he_normal'
  return config
