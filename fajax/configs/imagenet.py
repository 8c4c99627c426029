"""The ImageNet columns: ImageNet 1 (AlexNet without batch norm) and ImageNet 2 (ResNet-18).

Protocol of torchvision's ImageNet classification reference recipe for both models: SGD
momentum 0.9, weight decay 1e-4, batch 256, 90 epochs, learning rate 0.01 (AlexNet) / 0.1
(ResNet-18). Deviation: cosine decay instead of ÷10 every 30 epochs. Random-resized crop 224 +
flip for training; resize 256 and center crop 224 for evaluation.
"""

import ml_collections

from fajax.configs import common

MODELS = {'imagenet1': ('alexnet', 0.01), 'imagenet2': ('resnet18', 0.1)}


def get_config(column: str, method: str) -> ml_collections.ConfigDict:
  model, learning_rate = MODELS[column]
  config = common.get_config()
  config.method = method
  config.column = column
  config.dataset = 'imagenet2012'
  config.model = model
  config.image_size = 224
  config.optimizer = 'sgd'
  config.learning_rate = learning_rate
  config.momentum = 0.9
  config.weight_decay = 1e-4
  config.lr_schedule = 'cosine'
  config.batch_size = 256
  config.num_epochs = 90
  config.eval_batch_size = 250
  config.kernel_init = 'he_normal'
  config.log_every_steps = 500
  config.checkpoint_every_steps = 5000
  return config
