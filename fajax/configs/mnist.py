"""The MNIST column: LeNet-5 on MNIST, one training protocol for every method.

Adam (decoupled weight decay 5e-4 on kernels), learning rate 1e-3 with cosine decay to 0,
batch 32, 10 epochs; kernels (and FA's B) drawn from U(±1/√fan_in). The paper's protocol is not
available to us. This one is the same for every method, so the column compares rules, not
tuning. It was chosen on one-epoch runs (BUILD_NOTES.md): SGD with momentum trained BP and uSF
well but made DFA and DenseFA diverge, whose hidden-layer updates are ~10× BP's at the start;
Adam's per-parameter step size removes that scale difference, and every method trains stably.
10 epochs keep the whole column within ~25 minutes on a 2-core CPU.
"""

import ml_collections

from fajax.configs import common


def get_config(method: str) -> ml_collections.ConfigDict:
  config = common.get_config()
  config.method = method
  config.column = 'mnist'
  config.dataset = 'mnist'
  config.model = 'lenet5'
  config.optimizer = 'adam'
  config.learning_rate = 1e-3
  config.weight_decay = 5e-4
  config.lr_schedule = 'cosine'
  config.kernel_init = 'fan_in_uniform'
  # DFA / DenseFA: the error enters conv1 and conv2 after their pooling. Better on validation
  # for DFA (2 seeds, 10 epochs: 2.16 vs 2.58% at Adam 1e-3, 2.40 vs 3.10% at 3e-3;
  # BUILD_NOTES.md, "The four cells"); DenseFA takes the same entry points. Other methods
  # compute the same either way.
  config.error_after_pooling = True
  config.batch_size = 32
  # LeNet-5's step is short enough (≈ 4 ms) for the dispatch to count: 33 steps per call
  # (three calls and the diagnosed step fill each 100-step logging interval) make training
  # ≈ 10% faster (BUILD_NOTES.md, "Several steps per call").
  config.steps_per_call = 33
  config.num_epochs = 10
  return config
