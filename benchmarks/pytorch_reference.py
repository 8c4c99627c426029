"""LeNet-5 on MNIST in PyTorch, trained with BP or FA: the reference that fajax is timed against.

    python benchmarks/pytorch_reference.py --method=fa --epochs=1 --data_dir=/work/shared/data

It mirrors fajax's MNIST column (fajax/configs/mnist.py) for these two methods:

- the network of fajax/models/lenet.py: conv 6·5×5 → ReLU → max-pool 2 → conv 16·5×5 → ReLU →
  max-pool 2 → conv 120·5×5 → ReLU → FC 84 → ReLU → FC 10, valid convolutions, on 32×32;
- inputs as fajax.datasets.mnist.preprocess makes them, inside the step from the uint8 batch:
  scaled to [0, 1], zero-padded from 28×28 to 32×32, then (x − 0.1307) / 0.3081;
- kernels W, and FA's fixed feedback weights B, drawn independently from U(±1/√fan_in);
  biases zero (nnx's default bias init, which fajax's layers keep);
- AdamW (β 0.9 / 0.999, ε 1e-8) at 1e-3, cosine-decayed to 0 over the whole run, decoupled
  weight decay 5e-4 on kernels only (optax.adamw with fajax's kernel mask);
- batch 32, a fresh permutation of the training set every epoch with the incomplete last batch
  dropped, cross-entropy loss; evaluation on the 10,000 test images in batches of 1000.

The random streams are torch's, not fajax's: runs agree in distribution, not bit for bit.
"""

import argparse
import gzip
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

METHODS = ('bp', 'fa')
THREADS = 2
IMAGE_SIDE, INPUT_SIDE = 28, 32
PIXEL_MEAN, PIXEL_STD = 0.1307, 0.3081  # fajax.datasets.mnist's, of the training pixels
LEARNING_RATE, WEIGHT_DECAY, BATCH_SIZE, EVAL_BATCH_SIZE = 1e-3, 5e-4, 32, 1000
# Weight shapes in PyTorch's layout: conv [out, in, height, width], dense [out, in].
LAYER_SHAPES = {
    'conv1': (6, 1, 5, 5), 'conv2': (16, 6, 5, 5), 'conv3': (120, 16, 5, 5),
    'fc1': (84, 120), 'fc2': (10, 84),
}
MNIST_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}


class LinearFeedback(torch.autograd.Function):
  """y = x Wᵀ + b, whose backward pass sends the input's gradient through B instead of W."""

  @staticmethod
  def forward(ctx, x, weight, feedback, bias):
    ctx.save_for_backward(x, feedback)
    return F.linear(x, weight, bias)

  @staticmethod
  def backward(ctx, dy):
    x, feedback = ctx.saved_tensors
    dx = dy @ feedback if ctx.needs_input_grad[0] else None
    return dx, dy.t() @ x, None, dy.sum(0)


class Conv2dFeedback(torch.autograd.Function):
  """A valid, stride-1 convolution whose backward pass sends the input's gradient through B."""

  @staticmethod
  def forward(ctx, x, weight, feedback, bias):
    ctx.save_for_backward(x, feedback)
    return F.conv2d(x, weight, bias)

  @staticmethod
  def backward(ctx, dy):
    x, feedback = ctx.saved_tensors
    # The weight gradient reads only x and dy, never the weights: one call with B in W's place
    # gives B's input gradient and the ordinary weight and bias gradients, as BP's one call.
    dx, dweight, dbias = torch.ops.aten.convolution_backward(
        dy, x, feedback, [feedback.shape[0]], stride=[1, 1], padding=[0, 0],
        dilation=[1, 1], transposed=False, output_padding=[0, 0], groups=1,
        output_mask=[ctx.needs_input_grad[0], True, True])
    return dx, dweight, None, dbias


def fan_in_uniform(shape, generator: torch.Generator) -> torch.Tensor:
  bound = 1 / math.sqrt(math.prod(shape[1:]))
  return torch.empty(shape).uniform_(-bound, bound, generator=generator)


class FeedbackLayer(torch.nn.Module):
  """A conv (4-D weight) or dense layer; under FA its input gradient goes through a fixed B."""

  def __init__(self, shape, method: str, generator: torch.Generator):
    super().__init__()
    self.weight = torch.nn.Parameter(fan_in_uniform(shape, generator))
    self.bias = torch.nn.Parameter(torch.zeros(shape[0]))
    # A buffer, not a parameter: the optimizer never sees B.
    self.register_buffer('feedback', fan_in_uniform(shape, generator) if method == 'fa' else None)
    self.is_conv = len(shape) == 4

  def forward(self, x):
    if self.feedback is None:
      return (F.conv2d if self.is_conv else F.linear)(x, self.weight, self.bias)
    function = Conv2dFeedback if self.is_conv else LinearFeedback
    return function.apply(x, self.weight, self.feedback, self.bias)


class LeNet5(torch.nn.Module):
  """fajax's LeNet-5 (fajax/models/lenet.py) in NCHW, every layer a FeedbackLayer."""

  def __init__(self, method: str, generator: torch.Generator):
    super().__init__()
    if method not in METHODS:
      raise ValueError(f'method {method!r} is not one of {", ".join(METHODS)}')
    self.layers = torch.nn.ModuleDict(
        {name: FeedbackLayer(shape, method, generator) for name, shape in LAYER_SHAPES.items()})

  def forward(self, x):
    layers = self.layers
    x = F.max_pool2d(F.relu(layers['conv1'](x)), 2)
    x = F.max_pool2d(F.relu(layers['conv2'](x)), 2)
    x = F.relu(layers['conv3'](x)).flatten(1)
    x = F.relu(layers['fc1'](x))
    return layers['fc2'](x)


def preprocess(images: torch.Tensor) -> torch.Tensor:
  """uint8 [N, 1, 28, 28] → float32 [N, 1, 32, 32], as fajax.datasets.mnist.preprocess."""
  pad = (INPUT_SIDE - IMAGE_SIDE) // 2
  x = F.pad(images.float() / 255, (pad, pad, pad, pad))
  return (x - PIXEL_MEAN) / PIXEL_STD


class Trainer:
  """The model, its optimizer and learning-rate schedule, and the training and eval steps."""

  def __init__(self, method: str, total_steps: int, seed: int = 0, *,
               learning_rate: float = LEARNING_RATE, weight_decay: float = WEIGHT_DECAY):
    generator = torch.Generator().manual_seed(seed)
    self.model = LeNet5(method, generator)
    kernels = [p for p in self.model.parameters() if p.dim() > 1]
    biases = [p for p in self.model.parameters() if p.dim() == 1]
    self.optimizer = torch.optim.AdamW(
        [{'params': kernels, 'weight_decay': weight_decay}, {'params': biases, 'weight_decay': 0}],
        lr=learning_rate, betas=(0.9, 0.999), eps=1e-8)
    # optax.cosine_decay_schedule: the factor of step t, held at 0 past the last step.
    cosine = lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine)

  def step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One training step on a uint8 batch; returns the batch's mean loss."""
    loss = F.cross_entropy(self.model(preprocess(images)), labels)
    self.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    self.optimizer.step()
    self.schedule.step()
    return loss.detach()

  @torch.inference_mode()
  def evaluate(self, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean loss and top-1 error (%) over a whole split, in batches of EVAL_BATCH_SIZE."""
    loss, wrong = 0.0, 0
    for start in range(0, len(labels), EVAL_BATCH_SIZE):
      logits = self.model(preprocess(images[start:start + EVAL_BATCH_SIZE]))
      batch_labels = labels[start:start + EVAL_BATCH_SIZE]
      loss += F.cross_entropy(logits, batch_labels, reduction='sum').item()
      wrong += (logits.argmax(1) != batch_labels).sum().item()
    return {'loss': loss / len(labels), 'top1_error': 100 * wrong / len(labels)}


def read_idx(path: str) -> np.ndarray:
  """An IDX file's uint8 array: a 4-byte magic whose last byte is ndim, ndim big-endian
  uint32 sizes, then the data."""
  with (gzip.open if path.endswith('.gz') else open)(path, 'rb') as f:
    data = f.read()
  ndim = data[3]
  shape = np.frombuffer(data, '>u4', count=ndim, offset=4)
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find_idx(directory: str, name: str) -> str:
  """The path of MNIST file `name`, gzipped or not, in `directory`."""
  for path in (os.path.join(directory, name + '.gz'), os.path.join(directory, name)):
    if os.path.exists(path):
      return path
  raise SystemExit(f'MNIST file {name}.gz not found in {directory}: give --data_dir, the folder '
                   'that holds mnist/ (or set $FAJAX_DATA_DIR)')


def load_mnist(data_dir: str) -> dict:
  """{split: (uint8 images [N, 1, 28, 28], int64 labels [N])} from `data_dir`/mnist."""
  directory = os.path.join(data_dir, 'mnist')
  splits = {}
  for split, (images_name, labels_name) in MNIST_FILES.items():
    # A copy: torch wants a writable array, and frombuffer's over bytes is read-only.
    images = torch.from_numpy(read_idx(find_idx(directory, images_name)).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(find_idx(directory, labels_name)).astype(np.int64))
    splits[split] = images, labels
  return splits


def train(method: str, epochs: int, data_dir: str, seed: int) -> dict:
  """Trains for `epochs` epochs, evaluating after each; the last epoch's figures."""
  data = load_mnist(data_dir)
  train_images, train_labels = data['train']
  steps_per_epoch = len(train_labels) // BATCH_SIZE
  trainer = Trainer(method, epochs * steps_per_epoch, seed)
  order = torch.Generator().manual_seed(seed)
  for epoch in range(epochs):
    start = time.perf_counter()
    batches = torch.randperm(len(train_labels), generator=order)[:steps_per_epoch * BATCH_SIZE]
    loss_sum = torch.zeros(())
    for indices in batches.view(steps_per_epoch, BATCH_SIZE):
      loss_sum += trainer.step(train_images[indices], train_labels[indices])
    train_s = time.perf_counter() - start
    metrics = trainer.evaluate(*data['test'])
    print(f'epoch {epoch + 1}: train loss {loss_sum.item() / steps_per_epoch:.4f} '
          f'({train_s:.1f} s), test loss {metrics["loss"]:.4f}, '
          f'test error {metrics["top1_error"]:.2f}%', flush=True)
  return {'train_loss': loss_sum.item() / steps_per_epoch, 'test_loss': metrics['loss'],
          'test_top1_error': metrics['top1_error'], 'steps_per_epoch': steps_per_epoch}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  parser.add_argument('--method', choices=METHODS, default='fa')
  parser.add_argument('--epochs', type=int, default=1)
  parser.add_argument('--data_dir', default=os.environ.get('FAJAX_DATA_DIR', ''),
                      help='folder that holds mnist/ (default: $FAJAX_DATA_DIR)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--threads', type=int, default=THREADS, help='torch.set_num_threads')
  parser.add_argument('--result_json', default='', help='also write the result here')
  args = parser.parse_args()
  start = time.perf_counter()
  torch.set_num_threads(args.threads)
  result = train(args.method, args.epochs, args.data_dir, args.seed)
  result.update(method=args.method, epochs=args.epochs, wall_s=time.perf_counter() - start,
                torch=torch.__version__, threads=torch.get_num_threads())
  print(f'pytorch_reference: {args.method}, {args.epochs} epoch(s): test error '
        f'{result["test_top1_error"]:.2f}%, wall time {result["wall_s"]:.1f} s '
        '(after imports)')
  if args.result_json:
    with open(args.result_json, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
