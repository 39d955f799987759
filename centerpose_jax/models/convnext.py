"""The two-stage ConvNeXt of TAO's FAN hybrids (`patch_embed.backbone`): stem, stages at strides 4 and 8.

Module names mirror TAO's state_dict keys below `base.patch_embed.backbone.` (see `fan.py`). NHWC throughout.
"""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from centerpose_jax.models import conv
from centerpose_jax.models import layers

CONVNEXT_DIMS = (128, 256)  # Channels of the ConvNeXt stages (pyramid levels at strides 4 and 8).
CONVNEXT_NORM_EPS = 1e-6  # ConvNeXt LayerNorm2d (see UnbiasedLayerNorm for its variance).


class UnbiasedLayerNorm(nn.Module):
  """LayerNorm over the last axis that divides the squared deviations by C - 1 (Bessel-corrected variance).

  TAO's ConvNeXt LayerNorm2d takes this path whenever its NCHW input is not contiguous: the stem's
  LayerNorm2d returns a channels-last view, PyTorch convs keep that memory format, so every later
  LayerNorm2d (block `norm`, stage-1 `downsample.0`) normalizes with `torch.var_mean` (unbiased). Params
  `scale`/`bias` as nn.LayerNorm. x: [..., C] -> same; statistics in float32.
  """
  epsilon: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = jnp.square(x32 - mean).sum(axis=-1, keepdims=True) / (channels - 1)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(self.dtype)


def convnext_conv(features: int, kernel: int, dtype: Any, conv_impl: str, name: str) -> layers.Conv2d:
  """ConvNeXt conv, kernel = stride (1x1 MLP, k4 stem, k2 downsample); TAO init N(0, 0.02), bias 0."""
  return layers.Conv2d(features, kernel, stride=kernel, kernel_init=layers.TAO_NORMAL_INIT,
                       bias_init=nn.initializers.zeros, dtype=dtype, conv_impl=conv_impl, name=name)


class ConvMlp(nn.Module):
  """timm ConvMlp: 1x1 conv C -> 4C, GELU, 1x1 conv 4C -> C. x: [B, H, W, C]."""
  dim: int
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)

  @nn.compact
  def __call__(self, x):
    x = convnext_conv(layers.MLP_RATIO * self.dim, 1, self.dtype, self.conv_impl, "fc1")(x)
    return convnext_conv(self.dim, 1, self.dtype, self.conv_impl, "fc2")(layers.gelu(x))


class ConvNeXtBlock(nn.Module):
  """x + gamma * mlp(norm(dwconv7x7(x))). x: [B, H, W, dim] -> same."""
  dim: int
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)

  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,))
    y = layers.DepthwiseConv2d(7, layers.TAO_NORMAL_INIT, self.dtype, self.conv_impl, name="conv_dw")(x)
    y = UnbiasedLayerNorm(CONVNEXT_NORM_EPS, self.dtype, name="norm")(y)
    y = ConvMlp(self.dim, self.dtype, self.conv_impl, name="mlp")(y)
    return x + gamma.astype(y.dtype) * y


class ConvNeXtBlocks(nn.Module):
  """The `blocks` Sequential of a ConvNeXt stage: `depth` blocks named "0", "1", ..."""
  dim: int
  depth: int
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)
  remat: bool = False  # rematerialise each block in the backward pass (`layers.checkpointed`)

  @nn.compact
  def __call__(self, x):
    block = layers.checkpointed(ConvNeXtBlock, self.remat)
    for i in range(self.depth):
      x = block(self.dim, self.dtype, self.conv_impl, name=str(i))(x)
    return x


class ConvNeXtDownsample(nn.Module):
  """Stage-1 `downsample`: "0" LayerNorm2d, "1" conv k2 s2. [B, H, W, C] -> [B, H/2, W/2, dim]."""
  dim: int
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the conv (`conv.IMPLS`)

  @nn.compact
  def __call__(self, x):
    x = UnbiasedLayerNorm(CONVNEXT_NORM_EPS, self.dtype, name="0")(x)
    return convnext_conv(self.dim, 2, self.dtype, self.conv_impl, "1")(x)


class ConvNeXtStage(nn.Module):
  """One ConvNeXt stage: optional stride-2 `downsample`, then `blocks`."""
  dim: int
  depth: int
  downsample: bool
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)
  remat: bool = False  # rematerialise each block in the backward pass (`layers.checkpointed`)

  @nn.compact
  def __call__(self, x):
    if self.downsample:
      x = ConvNeXtDownsample(self.dim, self.dtype, self.conv_impl, name="downsample")(x)
    return ConvNeXtBlocks(self.dim, self.depth, self.dtype, self.conv_impl, self.remat, name="blocks")(x)


class ConvNeXtStages(nn.Module):
  """`stages` ModuleList: stage "0" (stride 4, Identity downsample) and stage "1" (stride 8)."""
  depths: Tuple[int, int]
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)
  remat: bool = False  # rematerialise each block in the backward pass (`layers.checkpointed`)

  @nn.compact
  def __call__(self, x):
    """x: [B, H/4, W/4, 128] -> [[B, H/4, W/4, 128], [B, H/8, W/8, 256]]."""
    outs = []
    for i, (dim, depth) in enumerate(zip(CONVNEXT_DIMS, self.depths)):
      x = ConvNeXtStage(dim, depth, i > 0, self.dtype, self.conv_impl, self.remat, name=str(i))(x)
      outs.append(x)
    return outs


class ConvNeXtStem(nn.Module):
  """`stem` Sequential: "0" conv k4 s4 3 -> 128, "1" LayerNorm2d (biased variance: contiguous input)."""
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the conv (`conv.IMPLS`)

  @nn.compact
  def __call__(self, x):
    x = convnext_conv(CONVNEXT_DIMS[0], 4, self.dtype, self.conv_impl, "0")(x)
    return layers.layer_norm(CONVNEXT_NORM_EPS, self.dtype, "1")(x)


class ConvNeXtFANBackbone(nn.Module):
  """Two-stage ConvNeXt (`patch_embed.backbone`). x: [B, H, W, 3] -> the two stage outputs (strides 4, 8)."""
  depths: Tuple[int, int]
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO  # formulation of the convs (`conv.IMPLS`)
  remat: bool = False  # rematerialise each block in the backward pass (`layers.checkpointed`)

  @nn.compact
  def __call__(self, x):
    x = ConvNeXtStem(self.dtype, self.conv_impl, name="stem")(x)
    return ConvNeXtStages(self.depths, self.dtype, self.conv_impl, self.remat, name="stages")(x)
