"""A vision transformer on MNIST (`fajax.models.vit`, `vit_tiny`), one protocol for every method.

Beyond the paper's table, which has no transformer: it asks whether a rule that trains
LeNet-5 also trains attention. AdamW as ViTs are usually trained (decoupled weight decay 0.05
on kernels), peak learning rate 1e-3 after a linear warm-up of 200 steps, then cosine decay to
0; batch 128, 2 epochs (780 steps with the 10,000 held-out validation examples); kernels and
FA's B drawn from LeCun normal, nnx's default. Short, so that it trains in minutes on a 2-core
CPU (≈ 1 step/s for one model, 0.4 for three replicas, on a busy one: BUILD_NOTES.md); the
same for every method, not tuned per method.
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.column = 'mnist_vit'
  config.dataset = 'mnist'
  config.model = 'vit_tiny'
  config.kernel_init = 'lecun_normal'
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.weight_decay = 0.05
  config.lr_schedule = 'cosine'
  config.warmup_steps = 200
  config.batch_size = 128
  config.num_epochs = 2
  return config
