"""Fields every experiment has, with defaults; a column's base config overrides some."""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # The column of the results table this experiment belongs to (fajax.paper.COLUMNS).
  config.column = ''

  # The learning rule (fajax.methods.METHODS) and its switches.
  config.method = 'bp'
  # Layers whose feedback is exact (B = W) whatever the method, by name: e.g. ('fc2',), the
  # readout of LeNet-5, is the "exact last layer" of Xiao et al. 2018 (fajax.rules). A caller's
  # model may keep plain nnx layers (which backprop exactly) only where they are named here, by
  # path (e.g. 'encoder/head'); elsewhere they are an error (fajax.to_feedback converts them).
  config.exact_layers = ()
  # Norm control per output filter (all axes but the last) instead of over the whole tensor.
  config.norm_per_output_filter = False
  # BP + Noise: B = W + σ·rms(W)·ξ; 0.75 gives the W–B angle of uSF (arctan 0.75 ≈ 37°).
  config.feedback_noise_std = 0.75
  # E/I (fixed signs): how a weight that an update would carry across zero is treated,
  # 'floor' (stop at ±1e-10) or 'reflect' (bounce back: W ← sign(W_0)·|W|), and the layers
  # left unconstrained, by name (e.g. ('fc2',), LeNet-5's readout) (fajax.constraints).
  config.sign_crossing = 'floor'
  config.sign_free_layers = ()
  # Weight mirror (Akrout et al. 2019): B ← B + η(ξᵀξW/(N·std²) − λB) with fresh noise ξ;
  # B settles at W/λ, so λ = 1 mirrors W at its own scale.
  config.mirror = ml_collections.ConfigDict(
      dict(learning_rate=0.02, decay=1.0, noise_std=1.0, num_samples=64)
  )
  # DFA / DenseFA: the error enters each pooled layer after its pooling, not before
  # (fajax.models.common.relu_then_pool); other methods compute the same either way.
  config.error_after_pooling = False
  # DFA / DenseFA refuse to build feedback matrices larger than this.
  config.direct_feedback_memory_budget_mb = 2048.0

  # 'mnist', 'cifar10', 'imagenet2012' (TFDS), or 'tfds:<name>' for any prepared TFDS
  # image-classification dataset (fajax.datasets.tfds_classification).
  config.dataset = ''
  # Folder of the raw datasets (mnist/, cifar10/, downloaded there on first use) and of the
  # cached statistics of tfds: datasets; '' means $FAJAX_DATA_DIR, else
  # $XDG_CACHE_HOME/fajax/data (~/.cache/fajax/data).
  config.data_dir = ''
  config.data_workers = 4  # threads of the grain input pipeline (CIFAR-10, ImageNet)
  config.image_size = 224  # ImageNet crop size; other datasets have fixed sizes
  # Use only the first N examples of a split; 0 uses the whole split.
  config.train_examples_limit = 0
  config.eval_examples_limit = 0

  config.model = ''
  # Multiplies every hidden layer's width (LeNet-5's channels and units); 1 is the published
  # network.
  config.model_width = 1.0
  # Initializer of every kernel W, and of FA's feedback weights B (fajax.layers).
  config.kernel_init = 'fan_in_uniform'
  # A .safetensors file written by fajax.export: training starts from its W, biases and
  # batch-norm statistics (every replica), to fine-tune a trained network or to continue it
  # under another method, and from its B where the method does not compute B from W
  # (fajax.weights_file). '' starts from the initializers; a resumed run, from its checkpoint.
  config.init_from = ''

  config.optimizer = 'sgd'  # 'sgd' (with momentum) or 'adam'
  config.learning_rate = 0.1
  config.momentum = 0.9  # SGD only
  # Batch Manhattan (Liao et al. 2016): the optimizer sees only the sign of each gradient entry.
  config.batch_manhattan = False
  config.weight_decay = 0.0  # on kernels only, not biases; never on feedback weights
  config.lr_schedule = 'cosine'  # 'constant' or 'cosine' (decays to 0 at the last step)
  config.warmup_steps = 0  # linear warm-up from 0, before the schedule

  # 'bfloat16' runs the forward and backward passes in bfloat16 (for GPUs and TPUs); weights,
  # optimizer state and the loss stay float32.
  config.compute_dtype = 'float32'
  config.batch_size = 128  # global: split over every device of every process
  # Split parameters of 2^18+ entries over the devices too, for models that do not fit one.
  config.shard_large_params = False
  config.eval_batch_size = 1000
  config.num_epochs = 10
  config.num_train_steps = -1  # when > 0, train this many steps instead of num_epochs

  # Steps run by one call of the jitted step (a lax.scan over that many batches) between
  # logging, evaluation and checkpoint steps: fewer dispatches from Python, which matter for
  # small models (fajax.configs.mnist). Results are the same up to float rounding.
  config.steps_per_call = 1

  config.log_every_steps = 100
  # 'START:END': a jax.profiler trace of the steps after START up to END, in <workdir>/profile/
  # for TensorBoard or Perfetto (fajax.profiling); '' traces nothing.
  config.profile_steps = ''
  # Where the logged metrics go (fajax.trackers): 'jsonl' (metrics.jsonl, which fajax's plots
  # and reports read), 'tensorboard', and the extras 'wandb' and 'mlflow'. The default needs no
  # account or server, so every run is readable offline.
  config.trackers = ('jsonl', 'tensorboard')
  # Per-layer alignment with exact BP (fajax.diagnostics), measured on each logging step.
  config.diagnostics = True
  config.eval_every_epochs = 1  # and always after the last step
  config.checkpoint_every_steps = 1000  # and always after the last step
  config.checkpoints_to_keep = 2

  config.seed = 0
  # Independent models trained together, as one program (fajax.replicas): replica r of each
  # setting uses seed `seed + r` for W, B, the rule's randomness and the batch order.
  config.replicas = 1
  # Hyper-parameters swept in the same program, crossed with the seeds: each field lists its
  # values (--config.sweep.learning_rate='(3e-4, 1e-3)'); an empty tuple is not swept.
  config.sweep = ml_collections.ConfigDict(dict(learning_rate=(), weight_decay=()))
  # Hold out the last N training examples as a validation split, evaluated beside the test
  # split; 0: no validation split. Choose hyper-parameters on it, never on the test split.
  config.validation_examples = 0
  return config
