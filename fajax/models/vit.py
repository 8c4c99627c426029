"""A small vision transformer (Dosovitskiy et al. 2021), written in plain Flax NNX.

Non-overlapping patches embedded by a convolution whose stride is the patch size, learned
position embeddings, pre-norm encoder blocks (multi-head self-attention, then a GELU MLP, each
on a residual branch), a final LayerNorm, the mean over the patches (no class token, as in
Beyer et al. 2022, "Better plain ViT baselines for ImageNet-1k") and a linear readout.

`models.create` converts it with `fajax.to_feedback`: the patch embedding, the attention's
query, key, value and output projections, the MLP and the readout become feedback layers;
LayerNorm, the attention's softmax and GELU keep their exact backward. DFA and DenseFA reach
it as every converted model, at its feedback layers' inputs (`fajax.wiring`).
"""

import jax
import jax.numpy as jnp
from flax import nnx

from fajax.convert import to_feedback


class EncoderBlock(nnx.Module):

  def __init__(self, width: int, num_heads: int, mlp_width: int, *, kernel_init,
               rngs: nnx.Rngs):
    self.attention_norm = nnx.LayerNorm(width, rngs=rngs)
    # No dropout, so the attention needs no random stream of its own.
    self.attention = nnx.MultiHeadAttention(num_heads, width, kernel_init=kernel_init,
                                            decode=False, keep_rngs=False, rngs=rngs)
    self.mlp_norm = nnx.LayerNorm(width, rngs=rngs)
    self.mlp_in = nnx.Linear(width, mlp_width, kernel_init=kernel_init, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_width, width, kernel_init=kernel_init, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = x + self.attention(self.attention_norm(x))
    return x + self.mlp_out(nnx.gelu(self.mlp_in(self.mlp_norm(x))))


class VisionTransformer(nnx.Module):
  """[batch, image_size, image_size, in_channels] images → [batch, num_classes] logits."""

  def __init__(self, num_classes: int = 10, in_channels: int = 1, *, image_size: int = 32,
               patch_size: int = 4, width: int = 64, depth: int = 4, num_heads: int = 4,
               mlp_width: int = 128, kernel_init=nnx.initializers.lecun_normal(),
               rngs: nnx.Rngs):
    if image_size % patch_size:
      raise ValueError(f'image_size {image_size} is not a multiple of patch_size {patch_size}')
    self.patch_embedding = nnx.Conv(in_channels, width, (patch_size, patch_size),
                                    strides=patch_size, padding='VALID',
                                    kernel_init=kernel_init, rngs=rngs)
    num_patches = (image_size // patch_size) ** 2
    self.position_embedding = nnx.Param(
        nnx.initializers.normal(0.02)(rngs.params(), (1, num_patches, width)))
    self.blocks = nnx.List([
        EncoderBlock(width, num_heads, mlp_width, kernel_init=kernel_init, rngs=rngs)
        for _ in range(depth)])
    self.norm = nnx.LayerNorm(width, rngs=rngs)
    self.head = nnx.Linear(width, num_classes, kernel_init=kernel_init, rngs=rngs)

  def __call__(self, images: jax.Array) -> jax.Array:
    x = self.patch_embedding(images)
    x = x.reshape(x.shape[0], -1, x.shape[-1]) + self.position_embedding[...]
    for block in self.blocks:
      x = block(x)
    return self.head(jnp.mean(self.norm(x), axis=1))


def vit_tiny(num_classes: int = 10, *, kernel_init=nnx.initializers.lecun_normal(),
             rngs: nnx.Rngs) -> nnx.Module:
  """The ViT for 32×32 single-channel images (MNIST), in minutes per epoch on a CPU: patches
  of 4×4, width 64, 4 blocks of 4 heads, MLP width 128; converted to feedback layers, B drawn
  from `kernel_init` like W."""
  model = VisionTransformer(num_classes, kernel_init=kernel_init, rngs=rngs)
  return to_feedback(model, rngs=rngs, kernel_init=kernel_init)
