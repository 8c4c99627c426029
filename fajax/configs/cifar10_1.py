"""The CIFAR-10 1 column: the DFA paper's conv net (Nøkland 2016) on CIFAR-10, flip + crop.

Architecture from Nøkland 2016 (conv 96/128/256 5×5, 3×3/2 max pools, FC 2048-2048), without
batch norm (`model='cifar_convnet_bn'` switches it on). The paper's protocol is not public and
CIFAR-10 cannot be run here, so the protocol is the MNIST column's, scaled: Adam (its per-
parameter step size keeps DFA/DenseFA stable next to BP, BUILD_NOTES.md), lr 5e-4 cosine-decayed,
batch 128, 100 epochs, decoupled weight decay 5e-4 on kernels. Untuned.
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.column = 'cifar10_1'
  config.dataset = 'cifar10'
  config.model = 'cifar_convnet'
  config.optimizer = 'adam'
  config.learning_rate = 5e-4
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.batch_size = 128
  config.num_epochs = 100
  config.eval_batch_size = 500
  return config
