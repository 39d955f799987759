"""The two-stage ConvNeXt of TAO's FAN hybrids (`patch_embed.backbone`): stem, stages at strides 4 and 8.

Module names mirror TAO's state_dict keys below `base.patch_embed.backbone.` (see `fan.py`). NHWC throughout.
"""

import functools
from typing import Tuple

import flax.linen as nn

from centerpose_jax.models import layers

CONVNEXT_DIMS = (128, 256)  # Channels of the ConvNeXt stages (pyramid levels at strides 4 and 8).
CONVNEXT_NORM_EPS = 1e-6  # ConvNeXt LayerNorm2d (`layers.UnbiasedLayerNorm` after the stem, see there).


def patch_conv(defs: layers.ModuleDefs, kernel: int) -> layers.ModuleDef:
  """ConvNeXt's conv with kernel = stride (1x1 MLP, k4 stem, k2 downsample); TAO init N(0, 0.02), bias 0.
  Called with the output channels (and a name)."""
  return functools.partial(defs.conv, kernel_size=kernel, stride=kernel, kernel_init=layers.TAO_NORMAL_INIT,
                           bias_init=nn.initializers.zeros)


class ConvNeXtBlock(nn.Module):
  """x + gamma * mlp(norm(dwconv7x7(x))). x: [B, H, W, dim] -> same."""
  dim: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,))
    y = self.defs.conv(self.dim, 7, padding=3, groups=self.dim, kernel_init=layers.TAO_NORMAL_INIT,
                       bias_init=nn.initializers.zeros, name="conv_dw")(x)
    y = layers.UnbiasedLayerNorm(CONVNEXT_NORM_EPS, name="norm")(y)
    y = layers.Mlp(self.dim, patch_conv(self.defs, 1), name="mlp")(y)
    return x + gamma.astype(y.dtype) * y


class ConvNeXtBlocks(nn.Module):
  """The `blocks` Sequential of a ConvNeXt stage: `depth` blocks named "0", "1", ... (`defs.remat` wraps each)."""
  dim: int
  depth: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    block = self.defs.remat(ConvNeXtBlock)
    for i in range(self.depth):
      x = block(self.dim, self.defs, name=str(i))(layers.cotangent_boundary(x))
    return x


class ConvNeXtDownsample(nn.Module):
  """Stage-1 `downsample`: "0" LayerNorm2d, "1" conv k2 s2. [B, H, W, C] -> [B, H/2, W/2, dim]."""
  dim: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    x = layers.UnbiasedLayerNorm(CONVNEXT_NORM_EPS, name="0")(x)
    return patch_conv(self.defs, 2)(self.dim, name="1")(x)


class ConvNeXtStage(nn.Module):
  """One ConvNeXt stage: optional stride-2 `downsample`, then `blocks`."""
  dim: int
  depth: int
  downsample: bool
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    if self.downsample:
      x = ConvNeXtDownsample(self.dim, self.defs, name="downsample")(x)
    return ConvNeXtBlocks(self.dim, self.depth, self.defs, name="blocks")(x)


class ConvNeXtStages(nn.Module):
  """`stages` ModuleList: stage "0" (stride 4, Identity downsample) and stage "1" (stride 8)."""
  depths: Tuple[int, int]
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    """x: [B, H/4, W/4, 128] -> [[B, H/4, W/4, 128], [B, H/8, W/8, 256]]."""
    outs = []
    for i, (dim, depth) in enumerate(zip(CONVNEXT_DIMS, self.depths)):
      x = ConvNeXtStage(dim, depth, i > 0, self.defs, name=str(i))(x)
      outs.append(x)
    return outs


class ConvNeXtStem(nn.Module):
  """`stem` Sequential: "0" conv k4 s4 3 -> 128, "1" LayerNorm2d (biased variance: its input is contiguous)."""
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    x = patch_conv(self.defs, 4)(CONVNEXT_DIMS[0], name="0")(x)
    return self.defs.layer_norm(epsilon=CONVNEXT_NORM_EPS, name="1")(x)


class ConvNeXt(nn.Module):
  """Two-stage ConvNeXt (`patch_embed.backbone`). x: [B, H, W, 3] -> the two stage outputs (strides 4, 8)."""
  depths: Tuple[int, int]
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    x = ConvNeXtStem(self.defs, name="stem")(x)
    return ConvNeXtStages(self.depths, self.defs, name="stages")(x)
