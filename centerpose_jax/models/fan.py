"""FAN hybrid backbones (fan_small, fan_base, fan_large) as used by TAO CenterPose.

A ConvNeXt stem with two stages (strides 4 and 8, `convnext.py`), a 2x2 patch embedding to stride 16, Fourier position
encoding, FAN blocks (token-mixing self-attention + channel processing), two class-attention blocks and a
stride-2 convolution to stride 32. Every pyramid level goes through its own LayerNorm.

The module tree mirrors TAO's PyTorch state_dict key paths below `base.` exactly: every dotted component
of a key is a Flax module name (Sequential/ModuleList indices are the names "0", "1", ...), so a checkpoint
converter maps leaves by name alone (`kernel` <- `weight`, `scale` <- norm `weight`, batch_stats
`mean`/`var` <- `running_mean`/`running_var`). Parameters that are not a layer's own (`gamma`, `gamma1`,
`gamma2`, `temperature`, `cls_token`) keep TAO's names and shapes.

Everything is NHWC; token sequences are [B, N, C] with N = H * W flattened row-major, which equals
PyTorch's `flatten(2).transpose(1, 2)` of the NCHW map.
"""

import functools
import math
from typing import NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from centerpose_jax.models import convnext
from centerpose_jax.models import layers


class FANArch(NamedTuple):
  """Hyper-parameters of one TAO FAN hybrid variant."""
  embed_dim: int  # E: token width of the FAN blocks.
  depth: int  # Number of FAN blocks.
  num_heads: int  # Heads of the token-mixing and channel-processing attention.
  convnext_depths: Tuple[int, int]  # ConvNeXt blocks in stage 0 and stage 1.
  p2_block: int  # Index of the FAN block whose output is the stride-16 pyramid level.


FAN_ARCHS = {
    "fan_small": FANArch(embed_dim=384, depth=10, num_heads=8, convnext_depths=(3, 3), p2_block=9),
    "fan_base": FANArch(embed_dim=448, depth=16, num_heads=8, convnext_depths=(3, 3), p2_block=15),
    # fan_large takes its stride-16 level from block 18 of 22; blocks 19-21 only feed the stride-32 path.
    "fan_large": FANArch(embed_dim=480, depth=22, num_heads=10, convnext_depths=(3, 5), p2_block=18),
}
P3_CHANNELS = 768  # Channels of `learnable_downsample` (pyramid level at stride 32).

DROP_PATH_RATE = 0.3  # TAO applies the same rate to every FAN block (not to class attention or ConvNeXt).
POS_HIDDEN_DIM = 32  # Fourier features per axis in the position encoding.
POS_TEMPERATURE = 10000.0
BLOCK_NORM_EPS = 1e-6  # FAN and class-attention norm1/norm2.
TORCH_NORM_EPS = 1e-5  # PyTorch nn.LayerNorm default: norm_v, out_norm*.
# FAN's DWConv init: N(0, sqrt(2 / fan_out)) with fan_out = k * k * C / groups = 9.
DWCONV_INIT = nn.initializers.normal(math.sqrt(2.0 / 9.0))


def fourier_position_features(height: int, width: int) -> np.ndarray:
  """TAO's PositionalEncodingFourier features before `token_projection`.

  Row i has y = (i + 1) / (height + 1e-6) * 2 pi (and likewise x for columns). Each axis gives 32 channels,
  sin(e / t_2m) at channel 2m and cos(e / t_2m+1) at channel 2m + 1 with t_j = 1e4 ** (2 floor(j / 2) / 32);
  the y channels come first. Computed in float32 like TAO.

  Returns:
    [height, width, 64] float32 array.
  """
  f32 = np.float32
  eps, scale = f32(1e-6), f32(2 * math.pi)
  y = np.arange(1, height + 1, dtype=f32)
  x = np.arange(1, width + 1, dtype=f32)
  y = y / (y[-1] + eps) * scale
  x = x / (x[-1] + eps) * scale
  j = np.arange(POS_HIDDEN_DIM, dtype=f32)
  dim_t = np.power(f32(POS_TEMPERATURE), 2 * np.floor(j / 2) / f32(POS_HIDDEN_DIM)).astype(f32)

  def encode(e):  # [L] -> [L, 32]
    e = e[:, None] / dim_t
    return np.stack([np.sin(e[:, 0::2]), np.cos(e[:, 1::2])], axis=-1).reshape(len(e), -1)

  pos_y = np.broadcast_to(encode(y)[:, None, :], (height, width, POS_HIDDEN_DIM))
  pos_x = np.broadcast_to(encode(x)[None, :, :], (height, width, POS_HIDDEN_DIM))
  return np.concatenate([pos_y, pos_x], axis=-1).astype(f32)


# ----------------------------------------------------------------------------------------------------
# Patch embedding (ConvNeXt stem + projection) and position encoding


class HybridEmbed(nn.Module):
  """`patch_embed`: ConvNeXt features, then a 2x2 patch projection to E-wide tokens at stride 16."""
  embed_dim: int
  convnext_depths: Tuple[int, int]
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, 3] -> (tokens [B, H/16 * W/16, E], [p0 [B, H/4, W/4, 128], p1 [B, H/8, W/8, 256]])."""
    features = convnext.ConvNeXt(self.convnext_depths, self.defs, name="backbone")(x)
    maps = self.defs.conv(self.embed_dim, 2, stride=2, name="proj")(features[-1])
    batch, height, width, channels = maps.shape
    return maps.reshape(batch, height * width, channels), features


class PositionalEncodingFourier(nn.Module):
  """`pos_embed`: Fourier features of the token grid, projected by a 1x1 conv to E channels."""
  embed_dim: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, height: int, width: int):
    """Returns [1, height * width, E] for a height x width token grid (any size)."""
    features = jnp.asarray(fourier_position_features(height, width))[None]
    pos = self.defs.conv(self.embed_dim, 1, name="token_projection")(features)
    return pos.reshape(1, height * width, self.embed_dim)


# ----------------------------------------------------------------------------------------------------
# FAN blocks


class TokenMixing(nn.Module):
  """Multi-head self-attention: `q` E -> E, `kv` E -> 2E (k = first E outputs, v = last E), `proj`."""
  dim: int
  num_heads: int
  defs: layers.ModuleDefs = layers.ModuleDefs()  # `defs.attention`: `layers.attention` of the formulation

  @nn.compact
  def __call__(self, x):
    """x: [B, N, E] -> [B, N, E]."""
    batch, tokens, _ = x.shape
    head_dim = self.dim // self.num_heads
    q = self.defs.dense(self.dim, name="q")(x).reshape(batch, tokens, self.num_heads, head_dim)
    kv = self.defs.dense(2 * self.dim, name="kv")(x)
    kv = kv.reshape(batch, tokens, 2, self.num_heads, head_dim)
    out = self.defs.attention(q, kv[:, :, 0], kv[:, :, 1])
    return self.defs.dense(self.dim, name="proj")(out.reshape(batch, tokens, self.dim))


class DWConv(nn.Module):
  """`dwconv`: depthwise 3x3 conv, GELU, BatchNorm, depthwise 3x3 conv on the token grid."""
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, height: int, width: int, train: bool):
    """x: [B, N, C] tokens of a height x width grid -> [B, N, C]."""
    batch, tokens, channels = x.shape
    depthwise = functools.partial(self.defs.conv, channels, 3, padding=1, groups=channels, kernel_init=DWCONV_INIT,
                                  bias_init=nn.initializers.zeros)
    y = x.reshape(batch, height, width, channels)
    y = layers.gelu(depthwise(name="conv1")(y))
    y = self.defs.batch_norm(use_running_average=not train, name="bn")(y)
    y = depthwise(name="conv2")(y)
    return y.reshape(batch, tokens, channels)


class DWConvMlp(nn.Module):
  """`mlp_v` (FAN's Mlp): fc1 E -> 4E, a + gamma * DWConv(a), fc2 4E -> E. No activation outside DWConv."""
  dim: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, height: int, width: int, train: bool):
    """x: [B, N, E] -> [B, N, E]."""
    hidden = layers.MLP_RATIO * self.dim
    gamma = self.param("gamma", nn.initializers.ones, (hidden,))
    a = self.defs.dense(hidden, name="fc1")(x)
    a = a + gamma.astype(a.dtype) * DWConv(self.defs, name="dwconv")(a, height, width, train)
    return self.defs.dense(self.dim, name="fc2")(a)


class ChannelProcessing(nn.Module):
  """FAN channel processing: a per-image, per-channel sigmoid gate times norm_v(mlp_v(x)).

  With x split into h heads of d channels: q = Linear(x) and k = x (no projection). softmax over tokens of
  q gives [B, N, h, d]; softmax over tokens of k, averaged over d, gives [B, N, h]; the gate is
  sigmoid(sum_n q * k) * temperature, [B, h, d]. It multiplies LayerNorm_v(mlp_v(x)) channel-wise.
  """
  dim: int
  num_heads: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, height: int, width: int, train: bool):
    """x: [B, N, E] -> [B, N, E]."""
    batch, tokens, _ = x.shape
    head_dim = self.dim // self.num_heads
    temperature = self.param("temperature", nn.initializers.ones, (self.num_heads, 1, 1))
    q = self.defs.dense(self.dim, name="q")(x)
    q = jax.nn.softmax(q.reshape(batch, tokens, self.num_heads, head_dim).astype(jnp.float32), axis=1)
    k = jax.nn.softmax(x.reshape(batch, tokens, self.num_heads, head_dim).astype(jnp.float32), axis=1)
    gate = jax.nn.sigmoid(jnp.einsum("bnhd,bnh->bhd", q, k.mean(axis=-1)))
    gate = (gate * temperature[:, :, 0]).reshape(batch, 1, self.dim)
    v = DWConvMlp(self.dim, self.defs, name="mlp_v")(x, height, width, train)
    v = self.defs.layer_norm(epsilon=TORCH_NORM_EPS, name="norm_v")(v)
    return gate.astype(v.dtype) * v


class FANBlock(nn.Module):
  """x + gamma1 * TokenMixing(norm1(x)), then + gamma2 * ChannelProcessing(norm2(x)), with DropPath."""
  dim: int
  num_heads: int
  drop_path_rate: float = DROP_PATH_RATE
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, height: int, width: int, train: bool):
    """x: [B, N, E] tokens of a height x width grid -> [B, N, E]."""
    gamma1 = self.param("gamma1", nn.initializers.ones, (self.dim,))
    gamma2 = self.param("gamma2", nn.initializers.ones, (self.dim,))
    drop_path = layers.drop_path(self.drop_path_rate)
    y = TokenMixing(self.dim, self.num_heads, self.defs, name="attn")(
        self.defs.layer_norm(epsilon=BLOCK_NORM_EPS, name="norm1")(x))
    x = x + drop_path(gamma1.astype(y.dtype) * y, deterministic=not train)
    y = ChannelProcessing(self.dim, self.num_heads, self.defs, name="mlp")(
        self.defs.layer_norm(epsilon=BLOCK_NORM_EPS, name="norm2")(x), height, width, train)
    return x + drop_path(gamma2.astype(y.dtype) * y, deterministic=not train)


class FANBlocks(nn.Module):
  """`blocks` ModuleList of FAN blocks "0", "1", ...; also returns the output of block `tap_index`."""
  dim: int
  num_heads: int
  depth: int
  tap_index: int
  defs: layers.ModuleDefs = layers.ModuleDefs()  # `defs.remat` wraps each block

  @nn.compact
  def __call__(self, x, height: int, width: int, train: bool):
    """x: [B, N, E] -> (output of block `tap_index`, output of the last block), both [B, N, E]."""
    tap = None
    block = self.defs.remat(FANBlock, static_argnums=(2, 3, 4))
    for i in range(self.depth):
      x = block(self.dim, self.num_heads, defs=self.defs, name=str(i))(layers.cotangent_boundary(x), height, width,
                                                                        train)
      if i == self.tap_index:
        tap = x
    return tap, x


# ----------------------------------------------------------------------------------------------------
# Class attention


class ClassAttn(nn.Module):
  """CaiT class attention: the query comes from token 0 only. x: [B, 1 + N, E] -> [B, 1, E]."""
  dim: int
  num_heads: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    batch, tokens, _ = x.shape
    head_dim = self.dim // self.num_heads
    q = self.defs.dense(self.dim, name="q")(x[:, :1]).reshape(batch, 1, self.num_heads, head_dim)
    k = self.defs.dense(self.dim, name="k")(x).reshape(batch, tokens, self.num_heads, head_dim)
    v = self.defs.dense(self.dim, name="v")(x).reshape(batch, tokens, self.num_heads, head_dim)
    out = layers.dot_product_attention(q, k, v).reshape(batch, 1, self.dim)
    return self.defs.dense(self.dim, name="proj")(out)


class ClassAttentionBlock(nn.Module):
  """TAO's ClassAttentionBlock with tokens_norm=True, copied exactly.

  n1 = norm1(x); t = x + gamma1 * [ClassAttn(n1); n1[1:]]; y = norm2(t); out = y + [gamma2 * Mlp(y[0]);
  y[1:]]. The patch tokens thus leave as 2 * norm2(x + gamma1 * norm1(x)), which the stride-32 level uses.
  """
  dim: int
  num_heads: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    """x: [B, 1 + N, E] (class token first) -> [B, 1 + N, E]."""
    gamma1 = self.param("gamma1", nn.initializers.ones, (self.dim,))
    gamma2 = self.param("gamma2", nn.initializers.ones, (self.dim,))
    n1 = self.defs.layer_norm(epsilon=BLOCK_NORM_EPS, name="norm1")(x)
    cls = ClassAttn(self.dim, self.num_heads, self.defs, name="attn")(n1)
    x = x + gamma1.astype(n1.dtype) * jnp.concatenate([cls, n1[:, 1:]], axis=1)
    x = self.defs.layer_norm(epsilon=BLOCK_NORM_EPS, name="norm2")(x)
    cls = gamma2.astype(x.dtype) * layers.Mlp(self.dim, self.defs.dense, name="mlp")(x[:, :1])
    return x + jnp.concatenate([cls, x[:, 1:]], axis=1)


class ClassAttentionBlocks(nn.Module):
  """`cls_attn_blocks` ModuleList: two class-attention blocks "0", "1"."""
  dim: int
  num_heads: int
  depth: int = 2
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    for i in range(self.depth):
      x = ClassAttentionBlock(self.dim, self.num_heads, self.defs, name=str(i))(x)
    return x


# ----------------------------------------------------------------------------------------------------
# The backbone


class FANBackbone(nn.Module):
  """TAO's FANFPN hybrid backbone for CenterPose (use it with name="base" to match TAO's keys).

  Attributes:
    model_type: "fan_small", "fan_base" or "fan_large".
    defs: the layer constructors: compute dtype (parameters stay float32), formulation of the convs and the
      attention ("native" gives plain and grouped ONNX Conv nodes), rematerialisation of every ConvNeXt and
      FAN block.
  """
  model_type: str
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x, train: bool) -> Sequence[jnp.ndarray]:
    """Feature pyramid of an image batch.

    Args:
      x: [B, H, W, 3] normalized image, NHWC; H and W divisible by 32.
      train: enables DropPath (needs the 'dropout' rng) and batch statistics in the DWConv BatchNorms.

    Returns:
      [p0 [B, H/4, W/4, 128], p1 [B, H/8, W/8, 256], p2 [B, H/16, W/16, E], p3 [B, H/32, W/32, 768]],
      each normalized by its `out_norm{i}`, in the compute dtype.
    """
    if self.model_type not in FAN_ARCHS:
      raise ValueError(f"unknown FAN model_type {self.model_type!r}; expected one of {sorted(FAN_ARCHS)}")
    if x.shape[1] % 32 or x.shape[2] % 32:
      raise ValueError(f"FAN needs H and W divisible by 32, got input shape {x.shape}")
    arch = FAN_ARCHS[self.model_type]
    dim = arch.embed_dim
    batch = x.shape[0]
    height, width = x.shape[1] // 16, x.shape[2] // 16

    cls_token = self.param("cls_token", layers.TAO_NORMAL_INIT, (1, 1, dim))
    tokens, (p0, p1) = HybridEmbed(dim, arch.convnext_depths, self.defs, name="patch_embed")(x)
    tokens = tokens + PositionalEncodingFourier(dim, self.defs, name="pos_embed")(height, width)
    p2, tokens = FANBlocks(dim, arch.num_heads, arch.depth, arch.p2_block, self.defs, name="blocks")(
        tokens, height, width, train)
    tokens = jnp.concatenate([jnp.broadcast_to(cls_token.astype(tokens.dtype), (batch, 1, dim)), tokens],
                             axis=1)
    tokens = ClassAttentionBlocks(dim, arch.num_heads, defs=self.defs, name="cls_attn_blocks")(tokens)
    p3 = self.defs.conv(P3_CHANNELS, 3, stride=2, padding=1, name="learnable_downsample")(
        tokens[:, 1:].reshape(batch, height, width, dim))
    p2 = p2.reshape(batch, height, width, dim)
    return [self.defs.layer_norm(epsilon=TORCH_NORM_EPS, name=f"out_norm{i}")(p)
            for i, p in enumerate((p0, p1, p2, p3))]
