"""DLA34 backbone as TAO CenterPose builds it (`get_dla_base`: levels [1, 1, 1, 2, 2, 1], BasicBlock).

The module tree mirrors TAO's state_dict below `base.`: `base_layer`, `level0` ... `level5`, Trees with
`tree1`, `tree2`, `root`, `project`; Sequential indices are the module names "0", "1". Backbone convs have no
bias; every conv is followed by BatchNorm (eps 1e-5).

One deliberate omission: a Tree with levels > 1 (`level3`, `level4`) owns a `project` whose output is passed
to its inner Tree, which overwrites it with its own projection, so TAO's `base.level{3,4}.project.*` (41,728
parameters) never affect the output. They are not built here; the converter lists them as unused keys.
"""

from typing import List, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from centerpose_jax.models import layers

DLA34_CHANNELS = (16, 32, 64, 128, 256, 512)  # level0 ... level5, strides 1, 2, 4, 8, 16, 32.
DLA34_TREE_LEVELS = (1, 2, 2, 1)  # Tree depth of level2 ... level5.


def dla34_channels(width_multiplier: float = 1.0) -> Tuple[int, ...]:
  """Channels of level0 ... level5, scaled by `width_multiplier` (1.0 is TAO's DLA34)."""
  if width_multiplier <= 0:
    raise ValueError(f"width_multiplier must be positive, got {width_multiplier}")
  return tuple(max(1, round(c * width_multiplier)) for c in DLA34_CHANNELS)


class ConvBatchNorm(nn.Module):
  """Sequential of "0" Conv2d (no bias) and "1" BatchNorm, optionally followed by ReLU.

  TAO's `base_layer`, `level0`, `level1` (with ReLU) and Tree `project` (1x1, without).
  """
  features: int
  kernel_size: int
  stride: int = 1
  relu: bool = True
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool):
    """x: [B, H, W, C] -> [B, H / stride, W / stride, features]."""
    x = self.defs.conv(self.features, self.kernel_size, self.stride, self.kernel_size // 2, use_bias=False,
                       name="0")(x)
    x = self.defs.batch_norm(use_running_average=not train, name="1")(x)
    return nn.relu(x) if self.relu else x


class BasicBlock(nn.Module):
  """relu(bn2(conv2(relu(bn1(conv1(x))))) + residual); conv1 has the stride, residual defaults to x."""
  features: int
  stride: int = 1
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool, residual: Optional[jnp.ndarray] = None):
    """x: [B, H, W, C] -> [B, H / stride, W / stride, features]; residual has the output's shape."""
    residual = x if residual is None else residual
    y = self.defs.conv(self.features, 3, self.stride, 1, use_bias=False, name="conv1")(x)
    y = nn.relu(self.defs.batch_norm(use_running_average=not train, name="bn1")(y))
    y = self.defs.conv(self.features, 3, 1, 1, use_bias=False, name="conv2")(y)
    y = self.defs.batch_norm(use_running_average=not train, name="bn2")(y)
    return nn.relu(y + residual)


class Root(nn.Module):
  """relu(bn(conv1x1(concat(children)))): aggregates a Tree's children (no residual, as TAO's DLA34)."""
  features: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, children: Sequence[jnp.ndarray], train: bool):
    """children: maps [B, H, W, C_i], concatenated in the given order -> [B, H, W, features]."""
    x = jnp.concatenate(children, axis=-1)
    x = self.defs.conv(self.features, 1, use_bias=False, name="conv")(x)
    return nn.relu(self.defs.batch_norm(use_running_average=not train, name="bn")(x))


class Tree(nn.Module):
  """DLA's recursive aggregation Tree.

  levels == 1: tree1 = BasicBlock(stride), tree2 = BasicBlock, output root([x2, x1, *children]) with the
  residual of tree1 = project(maxpool(x)) (maxpool(x) when the width does not change).
  levels > 1: tree1 = Tree(levels - 1, stride), tree2 = Tree(levels - 1) receiving children + [x1];
  no root of its own. With `level_root`, the max-pooled input joins the children. The concatenation order
  [x2, x1, pooled input, outer x1] fixes the layout of the root's 1x1 weights.

  Attributes:
    levels: depth of the tree.
    features: output channels.
    stride: 1 or 2 (conv1 of the first block; the residual path max-pools).
    level_root: whether the pooled input feeds the root.
    defs: the layer constructors; `defs.remat` wraps the BasicBlocks, `defs.max_pool` pools the residual path.
  """
  levels: int
  features: int
  stride: int = 1
  level_root: bool = False
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool, children: Sequence[jnp.ndarray] = ()):
    """x: [B, H, W, C] -> [B, H / stride, W / stride, features]."""
    bottom = self.defs.max_pool(x, self.stride) if self.stride > 1 else x
    children = list(children) + ([bottom] if self.level_root else [])
    if self.levels > 1:
      x1 = Tree(self.levels - 1, self.features, self.stride, defs=self.defs, name="tree1")(x, train)
      return Tree(self.levels - 1, self.features, defs=self.defs, name="tree2")(x1, train, children=children + [x1])
    residual = bottom
    if x.shape[-1] != self.features:
      residual = ConvBatchNorm(self.features, 1, relu=False, defs=self.defs, name="project")(bottom, train)
    block = self.defs.remat(BasicBlock, static_argnums=(2,))
    x1 = block(self.features, self.stride, self.defs, name="tree1")(x, train, residual)
    x2 = block(self.features, 1, self.defs, name="tree2")(x1, train)
    return Root(self.features, self.defs, name="root")([x2, x1, *children], train)


class DLA34(nn.Module):
  """DLA34 backbone (use it with name="base" to match TAO's keys).

  Attributes:
    channels: channels of level0 ... level5 (`dla34_channels()`).
    defs: the layer constructors (compute dtype, convolutions' formulation, BasicBlocks' rematerialisation).
  """
  channels: Sequence[int] = DLA34_CHANNELS
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool) -> List[jnp.ndarray]:
    """x: [B, H, W, 3], H and W divisible by 32 -> the six level outputs, level i [B, H / 2^i, W / 2^i,
    channels[i]]."""
    c = self.channels
    x = ConvBatchNorm(c[0], 7, defs=self.defs, name="base_layer")(x, train)
    outputs = []
    x = ConvBatchNorm(c[0], 3, defs=self.defs, name="level0")(x, train)
    outputs.append(x)
    x = ConvBatchNorm(c[1], 3, stride=2, defs=self.defs, name="level1")(x, train)
    outputs.append(x)
    for i, tree_levels in enumerate(DLA34_TREE_LEVELS, start=2):
      x = Tree(tree_levels, c[i], stride=2, level_root=i > 2, defs=self.defs, name=f"level{i}")(x, train)
      outputs.append(x)
    return outputs
