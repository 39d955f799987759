"""TAO CenterPose's neck: IDAUp (iterative deep aggregation) and DLAUp, with plain 3x3 convolutions.

TAO's `DeformConv` is a plain Conv2d(3x3, bias) + BatchNorm + ReLU (the original CenterPose uses DCNv2 here;
TAO does not). Up layers are depthwise transposed convs initialised to bilinear kernels and trainable.
Module names mirror TAO's keys: `proj_i`, `up_i`, `node_i`, `ida_j`, with `conv` and `actf.0`.
"""

from typing import List, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from centerpose_jax.models import layers


class BatchNormReLU(nn.Module):
  """TAO's `actf` Sequential: "0" BatchNorm, then ReLU."""
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool):
    return nn.relu(self.defs.batch_norm(use_running_average=not train, name="0")(x))


class ConvBlock(nn.Module):
  """TAO's `DeformConv(chi, cho)`: `conv` 3x3 (stride 1, padding 1, bias), then `actf` (BN, ReLU).

  x: [B, H, W, chi] -> [B, H, W, features].
  """
  features: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool):
    x = self.defs.conv(self.features, 3, padding=1, name="conv")(x)
    return BatchNormReLU(self.defs, name="actf")(x, train)


class IDAUp(nn.Module):
  """Iterative deep aggregation: each coarser map is projected, upsampled and merged with its finer neighbour.

  For i in (startp, endp): layers[i] = node_j(up_j(proj_j(layers[i])) + layers[i - 1]) with j = i - startp,
  where up_j upsamples by `up_factors[j]` (so that layers[i] reaches layers[i - 1]'s size).
  layers[startp] is not projected and must already have `features` channels.

  Attributes:
    features: output channels of every proj/node (TAO's `o`).
    up_factors: per input index, the upsampling factor of up_j (index 0 is unused, as TAO's `up_f`).
    defs: the layer constructors (convs, BatchNorms, up layers).
  """
  features: int
  up_factors: Sequence[int]
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, maps: Sequence[jnp.ndarray], startp: int, endp: int, train: bool) -> List[jnp.ndarray]:
    """maps: NHWC maps, each at half the resolution of the previous one; returns a new list where
    maps[startp + 1:endp] are replaced by the aggregated [B, H_i', W_i', features] maps."""
    maps = list(maps)
    for i in range(startp + 1, endp):
      j = i - startp
      y = ConvBlock(self.features, self.defs, name=f"proj_{j}")(maps[i], train)
      y = self.defs.upsample(self.up_factors[j], name=f"up_{j}")(y)
      maps[i] = ConvBlock(self.features, self.defs, name=f"node_{j}")(y + maps[i - 1], train)
    return maps


def dla_up_stages(channels: Sequence[int], scales: Sequence[int]) -> List[Tuple[int, Tuple[int, ...]]]:
  """(features, up_factors) of DLAUp's `ida_0`, `ida_1`, ..., as TAO's DLAUp constructor computes them.

  ida_i aggregates the last i + 2 maps into channels[-i - 2]; after each stage the maps it produced share
  that stage's scale. DLA34 (channels [64, 128, 256, 512], scales [1, 2, 4, 8]) gives
  (256, (1, 2)), (128, (1, 2, 2)), (64, (1, 2, 2, 2)).
  """
  scales = list(scales)
  stages = []
  for i in range(len(channels) - 1):
    j = len(channels) - i - 2
    stages.append((channels[j], tuple(s // scales[j] for s in scales[j:])))
    scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
  return stages


class DLAUp(nn.Module):
  """TAO's DLAUp: coarse-to-fine IDAUp stages over the backbone levels.

  Attributes:
    startp: index of the finest level used (log2 of the output stride; 2 for stride 4).
    channels: channels of levels startp ... last.
    scales: their strides relative to level startp (1, 2, 4, ...).
    defs: the layer constructors (convs, BatchNorms, up layers).
  """
  startp: int
  channels: Sequence[int]
  scales: Sequence[int]
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, levels: Sequence[jnp.ndarray], train: bool) -> List[jnp.ndarray]:
    """levels: all backbone outputs (level0 ... last) -> [aggregated level startp, ..., aggregated
    second-to-last level, last level unchanged], each with the channels of its level."""
    maps = list(levels)
    count = len(maps)
    outputs = [maps[-1]]
    for i, (features, up_factors) in enumerate(dla_up_stages(self.channels, self.scales)):
      ida = IDAUp(features, up_factors, self.defs, name=f"ida_{i}")
      maps = ida(maps, count - i - 2, count, train)
      outputs.insert(0, maps[-1])
    return outputs
