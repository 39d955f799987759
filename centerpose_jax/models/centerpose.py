"""The CenterPose network: backbone (DLA34 or FAN) -> neck -> ConvGRU -> seven heads.

DLA34: base (6 levels) -> dla_up -> ida_up (levels first_level .. last_level - 1) -> 64 channels at stride 4.
FAN:   base (4-level pyramid, strides 4-32) -> ida_up(128, up factors [1, 2, 4, 8]) -> 128 channels at
       stride 4.
Both then run convGRU (hidden = neck width) and the heads (hm, wh, reg from GRU step 1; hm_hp, hp_offset,
hps from step 2; scale from step 3); the first convs of the heads that read one map run as one convolution
(`heads.apply_heads`). The module tree mirrors TAO's state_dict key paths (without TAO's
Lightning `model.` prefix), which is what the checkpoint converter relies on.
"""

import math
from typing import Any, Dict

import flax.linen as nn
import jax.numpy as jnp

from centerpose_jax.models import conv
from centerpose_jax.models import convgru
from centerpose_jax.models import dla
from centerpose_jax.models import heads as heads_lib
from centerpose_jax.models import layers
from centerpose_jax.models import neck
from centerpose_jax.models import registry
from centerpose_jax.models import tiny

FAN_NECK_CHANNELS = 128  # TAO hard-codes the FAN neck, GRU and head input width.
INPUT_DIVISOR = 32  # H and W must be multiples of the deepest stride.


class CenterPose(nn.Module):
  """CenterPose with TAO's structure; call as model.apply(variables, x, train=...).

  Attributes:
    model_type: a backbone of the DLA or FAN family of `registry.BACKBONES` ("DLA34", "fan_small", ...).
    head_conv: hidden channels of each head (TAO 256; <= 0 makes each head a single conv).
    final_kernel: kernel size of the heads' last conv.
    use_convGRU: run the ConvGRU between neck and heads (TAO default True; also enables the heads'
      GroupNorm, as TAO).
    down_ratio: output stride. DLA34: 2, 4, 8 or 16 (first_level = log2(down_ratio)); FAN: 4 only.
    last_level: DLA34 only: one past the last backbone level merged by ida_up (TAO 5).
    out_channel: DLA34 only: 0 (TAO default) or the width of level first_level.
    width_multiplier: DLA34 only, not in TAO: scales the backbone, neck and GRU widths (1.0 = TAO).
    dtype: compute dtype (float32, bfloat16, float16); parameters stay float32, outputs are float32.
    conv_impl: formulation of every convolution (`conv.IMPLS`): "auto" picks per platform when lowered
      (the CPU formulations on the CPU, XLA's convolutions elsewhere); "native" is XLA's everywhere, the one
      that exports to ONNX Conv / ConvTranspose.
    activation_checkpointing: rematerialise the backbone's blocks (DLA34's BasicBlocks, FAN's ConvNeXt and FAN
      blocks) in the backward pass instead of keeping their activations (`train.activation_checkpointing`).

  These three are resolved once, into the `layers.ModuleDefs` every part of the network builds its layers from.
  """
  model_type: str = "DLA34"
  head_conv: int = 256
  final_kernel: int = 1
  use_convGRU: bool = True  # pylint: disable=invalid-name
  down_ratio: int = 4
  last_level: int = 5
  out_channel: int = 0
  width_multiplier: float = 1.0
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO
  activation_checkpointing: bool = False

  def _dla_features(self, x, train: bool, defs: layers.ModuleDefs):
    """DLA34 backbone + DLAUp + IDAUp: [B, H, W, 3] -> [B, H / down_ratio, W / down_ratio, C]."""
    if self.down_ratio not in (2, 4, 8, 16):
      raise ValueError(f"DLA34 supports down_ratio 2, 4, 8 or 16, got {self.down_ratio}")
    first_level = int(math.log2(self.down_ratio))
    channels = dla.dla34_channels(self.width_multiplier)
    if not first_level < self.last_level <= len(channels):
      raise ValueError(f"last_level must be in ({first_level}, {len(channels)}], got {self.last_level}")
    if self.out_channel not in (0, channels[first_level]):
      raise ValueError(f"out_channel must be 0 or {channels[first_level]} (TAO's heads take the width of "
                       f"level {first_level}), got {self.out_channel}")
    levels = dla.DLA34(channels, defs, name="base")(x, train)
    level_channels = channels[first_level:]
    maps = neck.DLAUp(first_level, level_channels, [2**i for i in range(len(level_channels))], defs,
                      name="dla_up")(levels, train)
    count = self.last_level - first_level
    maps = neck.IDAUp(channels[first_level], [2**i for i in range(count)], defs, name="ida_up")(
        maps[:count], 0, count, train)
    return maps[-1]

  def _fan_features(self, x, train: bool, defs: layers.ModuleDefs):
    """FAN backbone + IDAUp: [B, H, W, 3] -> [B, H / 4, W / 4, 128]."""
    from centerpose_jax.models import fan  # pylint: disable=g-import-not-at-top
    if self.down_ratio != 4:
      raise ValueError(f"FAN backbones output stride 4; down_ratio must be 4, got {self.down_ratio}")
    if self.width_multiplier != 1.0:
      raise ValueError("model.backbone.width_multiplier applies to DLA34 only")
    pyramid = fan.FANBackbone(self.model_type, defs, name="base")(x, train)
    maps = neck.IDAUp(FAN_NECK_CHANNELS, [1, 2, 4, 8], defs, name="ida_up")(pyramid, 0, len(pyramid), train)
    return maps[-1]

  @nn.compact
  def __call__(self, x, train: bool) -> Dict[str, jnp.ndarray]:
    """Head maps of a batch of normalised BGR images.

    Args:
      x: [B, H, W, 3] float, NHWC; H and W multiples of 32 (any size, non-square included).
      train: batch statistics in BatchNorm (updates `batch_stats`, apply with mutable=["batch_stats"]) and,
        for FAN, DropPath (needs the 'dropout' rng).

    Returns:
      {head: [B, H / down_ratio, W / down_ratio, HEADS[head]] float32 logits} for every head of `heads.HEADS`.
    """
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"expected input [B, H, W, 3], got shape {x.shape}")
    if x.shape[1] % INPUT_DIVISOR or x.shape[2] % INPUT_DIVISOR:
      raise ValueError(f"input height and width must be multiples of {INPUT_DIVISOR}, got {x.shape[1:3]}")
    x = x.astype(self.dtype)
    defs = layers.module_defs(self.dtype, self.conv_impl, self.activation_checkpointing)
    family = registry.backbone(self.model_type).family
    if family == registry.DLA:
      features = self._dla_features(x, train, defs)
    elif family == registry.FAN:
      features = self._fan_features(x, train, defs)
    else:
      raise ValueError(f"{self.model_type!r} is not a CenterPose backbone (use `create_model`)")

    if self.use_convGRU:
      states = convgru.ConvGRU(features.shape[-1], defs, name="convGRU")(features)
      groups = [(state, [head for head, s in heads_lib.GRU_STEP_OF_HEAD.items() if s == step])
                for step, state in enumerate(states)]
    else:
      groups = [(features, list(heads_lib.HEADS))]

    if self.head_conv > 0:
      heads = {head: heads_lib.Head(classes, self.head_conv, self.final_kernel, self.use_convGRU,
                                    heads_lib.is_heatmap(head), defs, name=head)
               for head, classes in heads_lib.HEADS.items()}
      outputs = heads_lib.apply_heads(heads, groups)
    else:
      inputs = {head: x for x, names in groups for head in names}
      outputs = {head: heads_lib.final_conv(defs, classes, self.final_kernel, heads_lib.is_heatmap(head), head)(
          inputs[head]) for head, classes in heads_lib.HEADS.items()}
    return {head: outputs[head].astype(jnp.float32) for head in heads_lib.HEADS}


def create_model(config, *, dtype: Any = jnp.float32, conv_impl: str = conv.AUTO,
                 activation_checkpointing: bool = False) -> nn.Module:
  """The CenterPose model described by `config.model` (backbone by `model.backbone.model_type`, one of
  `registry.BACKBONES`; the test backbone `registry.TINY` gives `tiny.TinyCenterPose`).

  Args:
    config: the whole config (configs/default.py) or its `model` section.
    dtype: compute dtype (jnp.float32, jnp.bfloat16 or jnp.float16); parameters stay float32.
    conv_impl: formulation of the convolutions (`conv.IMPLS`; "native" for ONNX export).
    activation_checkpointing: rematerialise the backbone's blocks in training (`train.activation_checkpointing`).
  """
  model_config = config.model if "model" in config else config
  if registry.backbone(model_config.backbone.model_type).family == registry.TEST:
    return tiny.TinyCenterPose(dtype=dtype)
  return CenterPose(
      model_type=model_config.backbone.model_type,
      head_conv=model_config.head_conv,
      final_kernel=model_config.final_kernel,
      use_convGRU=model_config.use_convGRU,
      down_ratio=model_config.down_ratio,
      last_level=model_config.last_level,
      out_channel=model_config.out_channel,
      width_multiplier=model_config.backbone.get("width_multiplier", 1.0),
      dtype=dtype,
      conv_impl=conv_impl,
      activation_checkpointing=activation_checkpointing)
