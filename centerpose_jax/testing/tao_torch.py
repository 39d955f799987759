"""An independent PyTorch reference of TAO's CenterPose network (tests and benchmarks; needs torch).

Written from ../shared/spec/networks.md and a reading of TAO's sources (tao_pytorch_backend, the
CenterPose model, its DLA/IDAUp/ConvGRU helpers, the FANFPN hybrid backbone and its ConvNeXt stem); no TAO
code is copied. The module tree carries TAO's state_dict key names (without the Lightning `model.` prefix),
so a TAO state_dict loads with `load_state_dict(..., strict=True)`; that includes the DLA's dead
`base.level{3,4}.project` layers. Unlike TAO's module, an instance is not locked to its first input size
(TAO's ConvGRU keeps zero bias tensors of the first size; they add nothing, so they are left out here).

`CenterPoseTAO(arch)(x)`: x [B, 3, H, W] (NCHW, H and W multiples of 32) -> {head: [B, C_head, H / 4,
W / 4]} raw logits for hm 1, wh 2, hps 16, reg 2, hm_hp 8, hp_offset 2, scale 3. Use it in eval() for
parity (train() has batch statistics but no DropPath). `centerpose_loss` is the training loss in the form of
`centerpose_jax.training.losses` (the benchmarks train both sides with it).
"""

import math

import torch
from torch import nn
from torch.nn import functional as F

# The head table (name -> channels, and the GRU step feeding each) is the spec's; the goldens check it too.
from centerpose_jax.models.heads import GRU_STEP_OF_HEAD
from centerpose_jax.models.heads import HEADS

# arch -> (embed dim E, FAN blocks, heads, ConvNeXt stage depths, index of the block that gives p2)
FAN_ARCHS = {"fan_small": (384, 10, 8, (3, 3), 9), "fan_base": (448, 16, 8, (3, 3), 15),
             "fan_large": (480, 22, 10, (3, 5), 18)}


def _bn(channels):
  return nn.BatchNorm2d(channels, momentum=0.1)


# ------------------------------------------------------------------------------------------------------
# DLA34 backbone and the DLAUp / IDAUp neck


class BasicBlock(nn.Module):
  """conv3x3(stride) BN ReLU conv3x3 BN, + residual (x itself when None), ReLU. No conv biases."""

  def __init__(self, cin, cout, stride=1):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = _bn(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = _bn(cout)

  def forward(self, x, residual=None):
    residual = x if residual is None else residual
    out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
    return F.relu(out + residual)


class Root(nn.Module):
  """ReLU(BN(conv1x1(concat(inputs along channels)))), no residual."""

  def __init__(self, cin, cout):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 1, bias=False)
    self.bn = _bn(cout)

  def forward(self, *inputs):
    return F.relu(self.bn(self.conv(torch.cat(inputs, 1))))


class Tree(nn.Module):
  """DLA aggregation tree. levels == 1: two BasicBlocks and a Root over [x2, x1, *children]; levels > 1:
  two sub-trees, the second receiving [*children, x1]. `project` of a levels > 1 tree is computed but its
  result is replaced inside tree1 (TAO's dead weights)."""

  def __init__(self, levels, cin, cout, stride=1, level_root=False, root_dim=0):
    super().__init__()
    root_dim = (root_dim or 2 * cout) + (cin if level_root else 0)
    if levels == 1:
      self.tree1, self.tree2 = BasicBlock(cin, cout, stride), BasicBlock(cout, cout)
      self.root = Root(root_dim, cout)
    else:
      self.tree1 = Tree(levels - 1, cin, cout, stride)
      self.tree2 = Tree(levels - 1, cout, cout, root_dim=root_dim + cout)
    self.levels, self.level_root = levels, level_root
    self.downsample = nn.MaxPool2d(stride, stride) if stride > 1 else None
    self.project = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), _bn(cout)) if cin != cout else None

  def forward(self, x, residual=None, children=None):
    children = [] if children is None else children
    bottom = self.downsample(x) if self.downsample is not None else x
    residual = self.project(bottom) if self.project is not None else bottom
    if self.level_root:
      children.append(bottom)
    x1 = self.tree1(x, residual)
    if self.levels == 1:
      return self.root(self.tree2(x1), x1, *children)
    return self.tree2(x1, children=children + [x1])


def _conv_level(cin, cout, stride):
  return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _bn(cout), nn.ReLU())


class DLA34(nn.Module):
  """x [B, 3, H, W] -> the 6 level outputs, [B, C_i, H / 2^i, W / 2^i] with C = 16, 32, 64, 128, 256, 512."""
  channels = (16, 32, 64, 128, 256, 512)

  def __init__(self):
    super().__init__()
    c = self.channels
    self.base_layer = nn.Sequential(nn.Conv2d(3, c[0], 7, 1, 3, bias=False), _bn(c[0]), nn.ReLU())
    self.level0 = _conv_level(c[0], c[0], 1)
    self.level1 = _conv_level(c[0], c[1], 2)
    self.level2 = Tree(1, c[1], c[2], 2)
    self.level3 = Tree(2, c[2], c[3], 2, level_root=True)
    self.level4 = Tree(2, c[3], c[4], 2, level_root=True)
    self.level5 = Tree(1, c[4], c[5], 2, level_root=True)

  def forward(self, x):
    outs = []
    x = self.base_layer(x)
    for i in range(6):
      x = getattr(self, f"level{i}")(x)
      outs.append(x)
    return outs


class ConvBNReLU(nn.Module):
  """TAO's `DeformConv`: a plain conv3x3 (bias), then `actf` = (BN, ReLU)."""

  def __init__(self, cin, cout):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 3, 1, 1)
    self.actf = nn.Sequential(_bn(cout), nn.ReLU())

  def forward(self, x):
    return self.actf(self.conv(x))


class IDAUp(nn.Module):
  """For i in (startp, endp): maps[i] = node(up(proj(maps[i])) + maps[i - 1]), in place. `up_j` is a
  depthwise ConvTranspose2d(kernel 2f, stride f, padding f // 2), f = up_factors[j]."""

  def __init__(self, out, channels, up_factors):
    super().__init__()
    for j in range(1, len(channels)):
      f = int(up_factors[j])
      setattr(self, f"proj_{j}", ConvBNReLU(channels[j], out))
      setattr(self, f"up_{j}", nn.ConvTranspose2d(out, out, 2 * f, f, f // 2, groups=out, bias=False))
      setattr(self, f"node_{j}", ConvBNReLU(out, out))

  def forward(self, maps, startp, endp):
    for i in range(startp + 1, endp):
      j = i - startp
      up = getattr(self, f"up_{j}")(getattr(self, f"proj_{j}")(maps[i]))
      maps[i] = getattr(self, f"node_{j}")(up + maps[i - 1])


class DLAUp(nn.Module):
  """ida_0 .. ida_{n-2}, coarse to fine; each stage's outputs then share its channels and scale.
  forward(levels) -> [aggregated level startp, ..., aggregated second-to-last, last level as is]."""

  def __init__(self, startp, channels, scales):
    super().__init__()
    self.startp = startp
    in_channels, scales = list(channels), list(scales)
    for i in range(len(channels) - 1):
      j = len(channels) - i - 2
      setattr(self, f"ida_{i}", IDAUp(channels[j], in_channels[j:], [s // scales[j] for s in scales[j:]]))
      scales[j + 1:] = [scales[j]] * (len(scales) - j - 1)
      in_channels[j + 1:] = [channels[j]] * (len(channels) - j - 1)

  def forward(self, levels):
    levels = list(levels)
    outs = [levels[-1]]
    for i in range(len(levels) - self.startp - 1):
      getattr(self, f"ida_{i}")(levels, len(levels) - i - 2, len(levels))
      outs.insert(0, levels[-1])
    return outs


# ------------------------------------------------------------------------------------------------------
# FAN hybrid backbone (FANFPN): ConvNeXt stem, patch embedding, FAN blocks, class attention


class LayerNorm2d(nn.LayerNorm):
  """TAO's ConvNeXt LayerNorm2d (eps 1e-6) over the channels of an NCHW map. Like TAO's, it takes the
  LayerNorm kernel (biased variance) when the input is NCHW-contiguous and returns a permuted view; on any
  other layout (channels-last, which the view propagates through the following convs) it normalises with
  torch.var_mean, whose variance is unbiased (divides by C - 1)."""

  def __init__(self, channels):
    super().__init__(channels, eps=1e-6)

  def forward(self, x):
    if x.is_contiguous(memory_format=torch.contiguous_format):
      return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                          self.eps).permute(0, 3, 1, 2)
    var, mean = torch.var_mean(x, dim=1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class ConvMlp(nn.Module):
  """1x1 conv C -> 4C, exact GELU, 1x1 conv 4C -> C."""

  def __init__(self, dim):
    super().__init__()
    self.fc1, self.fc2 = nn.Conv2d(dim, 4 * dim, 1), nn.Conv2d(4 * dim, dim, 1)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class ConvNeXtBlock(nn.Module):
  """x + gamma * mlp(norm(conv_dw 7x7 depthwise (x)))."""

  def __init__(self, dim):
    super().__init__()
    self.gamma = nn.Parameter(torch.ones(dim))
    self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
    self.norm = LayerNorm2d(dim)
    self.mlp = ConvMlp(dim)

  def forward(self, x):
    return self.mlp(self.norm(self.conv_dw(x))).mul(self.gamma.reshape(1, -1, 1, 1)) + x


class ConvNeXtStage(nn.Module):
  """Optional `downsample` (LayerNorm2d, conv k2 s2), then `blocks`."""

  def __init__(self, cin, cout, depth):
    super().__init__()
    if cin != cout:
      self.downsample = nn.Sequential(LayerNorm2d(cin), nn.Conv2d(cin, cout, 2, 2))
    else:
      self.downsample = nn.Identity()
    self.blocks = nn.Sequential(*[ConvNeXtBlock(cout) for _ in range(depth)])

  def forward(self, x):
    return self.blocks(self.downsample(x))


class ConvNeXtStem(nn.Module):
  """`patch_embed.backbone`: stem (conv k4 s4 3 -> 128, LayerNorm2d), stages 128 (/4) and 256 (/8).
  x [B, 3, H, W] -> [p0 [B, 128, H/4, W/4], p1 [B, 256, H/8, W/8]]."""

  def __init__(self, depths):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(3, 128, 4, 4), LayerNorm2d(128))
    self.stages = nn.Sequential(ConvNeXtStage(128, 128, depths[0]), ConvNeXtStage(128, 256, depths[1]))

  def forward(self, x):
    x = self.stem(x)
    outs = []
    for stage in self.stages:
      x = stage(x)
      outs.append(x)
    return outs


class HybridEmbed(nn.Module):
  """ConvNeXt features, then `proj` conv k2 s2 256 -> E. x -> (tokens [B, N, E] row-major over the
  (H/16, W/16) grid, (H/16, W/16), [p0, p1])."""

  def __init__(self, depths, dim):
    super().__init__()
    self.backbone = ConvNeXtStem(depths)
    self.proj = nn.Conv2d(256, dim, 2, 2)

  def forward(self, x):
    features = self.backbone(x)
    grid = self.proj(features[-1])
    return grid.flatten(2).transpose(1, 2), tuple(grid.shape[-2:]), features


class PositionalEncodingFourier(nn.Module):
  """Fourier features of an (H, W) grid: per axis 32 channels, sin at even and cos at odd channel j of
  e / 10000^(2 floor(j / 2) / 32), e = (i + 1) / (n + 1e-6) * 2 pi; y channels first, then x; then
  `token_projection` (1x1 conv 64 -> E). forward(H, W) -> [1, H * W, E]."""

  def __init__(self, dim):
    super().__init__()
    self.token_projection = nn.Conv2d(64, dim, 1)

  @staticmethod
  def _axis(n, device):
    e = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    e = e / (e[-1] + 1e-6) * (2 * math.pi)
    dim_t = 10000 ** (2 * torch.div(torch.arange(32, dtype=torch.float32, device=device), 2,
                                    rounding_mode="floor") / 32)
    e = e[:, None] / dim_t
    return torch.stack([e[:, 0::2].sin(), e[:, 1::2].cos()], dim=2).flatten(1)  # [n, 32]

  def forward(self, height, width):
    device = self.token_projection.weight.device  # the module's (CUDA in the GPU bench)
    pos_y = self._axis(height, device)[:, None, :].expand(height, width, 32)
    pos_x = self._axis(width, device)[None, :, :].expand(height, width, 32)
    pos = torch.cat([pos_y, pos_x], dim=2).permute(2, 0, 1)[None]  # [1, 64, H, W]
    return self.token_projection(pos).flatten(2).transpose(1, 2)


def _split_heads(x, heads):
  """[B, N, C] -> [B, heads, N, C / heads]."""
  batch, tokens, channels = x.shape
  return x.reshape(batch, tokens, heads, channels // heads).permute(0, 2, 1, 3)


class TokenMixing(nn.Module):
  """Multi-head self-attention; `kv` gives k (first E outputs) and v (last E), each head-major."""

  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.q, self.kv, self.proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)

  def forward(self, x):
    k, v = self.kv(x).chunk(2, dim=-1)
    out = F.scaled_dot_product_attention(*(_split_heads(t, self.heads) for t in (self.q(x), k, v)))
    return self.proj(out.transpose(1, 2).flatten(2))


class DWConv(nn.Module):
  """Tokens of an (H, W) grid as a map: depthwise conv3x3, GELU, BN, depthwise conv3x3; back to tokens."""

  def __init__(self, dim):
    super().__init__()
    self.conv1 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
    self.bn = nn.BatchNorm2d(dim)
    self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

  def forward(self, x, height, width):
    batch, tokens, channels = x.shape
    y = x.transpose(1, 2).reshape(batch, channels, height, width)
    y = self.conv2(self.bn(F.gelu(self.conv1(y))))
    return y.reshape(batch, channels, tokens).transpose(1, 2)


class DWConvMlp(nn.Module):
  """`mlp_v`: a = fc1(x); a = a + gamma * DWConv(a); fc2(a). No activation outside DWConv."""

  def __init__(self, dim):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
    self.dwconv = DWConv(4 * dim)
    self.gamma = nn.Parameter(torch.ones(4 * dim))

  def forward(self, x, height, width):
    a = self.fc1(x)
    return self.fc2(a + self.gamma * self.dwconv(a, height, width))


class ChannelProcessing(nn.Module):
  """Per-image, per-channel gate times norm_v(mlp_v(x)). Per head: q = softmax over tokens of Linear(x),
  k = softmax over tokens of x, averaged over the head's channels; gate = sigmoid(q^T k) * temperature."""

  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.temperature = nn.Parameter(torch.ones(heads, 1, 1))
    self.mlp_v = DWConvMlp(dim)
    self.norm_v = nn.LayerNorm(dim)
    self.q = nn.Linear(dim, dim)

  def forward(self, x, height, width):
    batch, tokens, channels = x.shape
    q = _split_heads(self.q(x), self.heads).softmax(-2).transpose(-1, -2)  # [B, h, d, N]
    k = _split_heads(x, self.heads).softmax(-2).mean(-1, keepdim=True)  # [B, h, N, 1]
    gate = torch.sigmoid(q @ k) * self.temperature  # [B, h, d, 1]
    v = self.norm_v(self.mlp_v(x, height, width))
    return v * gate.reshape(batch, 1, channels)


class FANBlock(nn.Module):
  """x + gamma1 * attn(norm1(x)), then + gamma2 * mlp(norm2(x)); LayerNorm eps 1e-6 (eval: no DropPath)."""

  def __init__(self, dim, heads):
    super().__init__()
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn, self.mlp = TokenMixing(dim, heads), ChannelProcessing(dim, heads)
    self.gamma1, self.gamma2 = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))

  def forward(self, x, height, width):
    x = x + self.gamma1 * self.attn(self.norm1(x))
    return x + self.gamma2 * self.mlp(self.norm2(x), height, width)


class ClassAttn(nn.Module):
  """CaiT class attention: query from token 0, keys and values from all tokens. [B, 1 + N, E] -> [B, 1, E]."""

  def __init__(self, dim, heads):
    super().__init__()
    self.heads = heads
    self.q, self.k, self.v, self.proj = (nn.Linear(dim, dim) for _ in range(4))

  def forward(self, x):
    q, k, v = (_split_heads(t, self.heads) for t in (self.q(x[:, :1]), self.k(x), self.v(x)))
    return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))


class Mlp(nn.Module):
  """fc1 E -> 4E, exact GELU, fc2 4E -> E."""

  def __init__(self, dim):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

  def forward(self, x):
    return self.fc2(F.gelu(self.fc1(x)))


class ClassAttentionBlock(nn.Module):
  """With tokens_norm: n1 = norm1(x); t = norm2(x + gamma1 * [attn(n1); n1[1:]]);
  out = t + [gamma2 * mlp(t[0]); t[1:]] (so patch tokens leave as 2 * t)."""

  def __init__(self, dim, heads):
    super().__init__()
    self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
    self.attn, self.mlp = ClassAttn(dim, heads), Mlp(dim)
    self.gamma1, self.gamma2 = nn.Parameter(torch.ones(dim)), nn.Parameter(torch.ones(dim))

  def forward(self, x):
    n1 = self.norm1(x)
    t = self.norm2(x + self.gamma1 * torch.cat([self.attn(n1), n1[:, 1:]], dim=1))
    return t + torch.cat([self.gamma2 * self.mlp(t[:, :1]), t[:, 1:]], dim=1)


class FANFPN(nn.Module):
  """x [B, 3, H, W] -> [p0 [B, 128, H/4, W/4], p1 [B, 256, H/8, W/8], p2 [B, E, H/16, W/16] (after block
  `p2_block`), p3 [B, 768, H/32, W/32] (class-attention patch tokens, conv3x3 s2)], each through its
  `out_norm{i}` (LayerNorm over channels, eps 1e-5)."""

  def __init__(self, arch):
    super().__init__()
    dim, depth, heads, depths, self.p2_block = FAN_ARCHS[arch]
    self.out_channels = (128, 256, dim, 768)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
    self.patch_embed = HybridEmbed(depths, dim)
    self.pos_embed = PositionalEncodingFourier(dim)
    self.blocks = nn.ModuleList(FANBlock(dim, heads) for _ in range(depth))
    self.cls_attn_blocks = nn.ModuleList(ClassAttentionBlock(dim, heads) for _ in range(2))
    for i, channels in enumerate(self.out_channels):
      setattr(self, f"out_norm{i}", nn.LayerNorm(channels))
    self.learnable_downsample = nn.Conv2d(dim, 768, 3, 2, 1)

  def forward(self, x):
    batch = x.shape[0]
    tokens, (height, width), (p0, p1) = self.patch_embed(x)
    tokens = tokens + self.pos_embed(height, width)

    def grid(t):  # [B, N, E] tokens -> [B, E, height, width]
      return t.transpose(1, 2).reshape(batch, -1, height, width)

    for i, block in enumerate(self.blocks):
      tokens = block(tokens, height, width)
      if i == self.p2_block:
        p2 = grid(tokens)
    tokens = torch.cat([self.cls_token.expand(batch, -1, -1), tokens], dim=1)
    for block in self.cls_attn_blocks:
      tokens = block(tokens)
    p3 = self.learnable_downsample(grid(tokens[:, 1:]))
    return [getattr(self, f"out_norm{i}")(p.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            for i, p in enumerate((p0, p1, p2, p3))]


# ------------------------------------------------------------------------------------------------------
# ConvGRU, heads and the whole network


class ConvGRUCell(nn.Module):
  """3x3 convs Wir, Wiz, Win (bias) on x and Whr, Whz, Whn (no bias) on h. One step:
  r = sig(Wir x + Whr h), z = sig(Wiz x + Whz h), n = tanh(Win x + r * Whn h), h' = (1 - z) n + z h."""

  def __init__(self, channels):
    super().__init__()
    for gate in "rzn":
      setattr(self, f"Wi{gate}", nn.Conv2d(channels, channels, 3, 1, 1))
      setattr(self, f"Wh{gate}", nn.Conv2d(channels, channels, 3, 1, 1, bias=False))

  def forward(self, x, h):
    r = torch.sigmoid(self.Wir(x) + self.Whr(h))
    z = torch.sigmoid(self.Wiz(x) + self.Whz(h))
    n = torch.tanh(self.Win(x) + r * self.Whn(h))
    return (1 - z) * n + z * h


class ConvGRU(nn.Module):
  """One cell `cell0` run 3 steps on the same input from h0 = 0; returns the 3 hidden states."""

  def __init__(self, channels):
    super().__init__()
    self.cell0 = ConvGRUCell(channels)

  def forward(self, x):
    h, states = torch.zeros_like(x), []
    for _ in range(3):
      h = self.cell0(x, h)
      states.append(h)
    return states


class CenterPoseTAO(nn.Module):
  """TAO CenterPose (use_convGRU, head_conv 256, final_kernel 1, down_ratio 4) for `arch` in DLA34,
  fan_small, fan_base, fan_large. forward: x [B, 3, H, W] -> {head: [B, HEADS[head], H/4, W/4]}."""

  def __init__(self, arch):
    super().__init__()
    self.arch = arch
    if arch == "DLA34":
      self.base = DLA34()
      self.dla_up = DLAUp(2, DLA34.channels[2:], [1, 2, 4, 8])
      self.ida_up = IDAUp(64, DLA34.channels[2:5], [1, 2, 4])
      width = 64
    else:
      self.base = FANFPN(arch)
      self.ida_up = IDAUp(128, self.base.out_channels, [1, 2, 4, 8])
      width = 128
    self.convGRU = ConvGRU(width)  # pylint: disable=invalid-name
    for head, classes in HEADS.items():
      setattr(self, head, nn.Sequential(nn.Conv2d(width, 256, 3, padding=1), nn.GroupNorm(32, 256), nn.ReLU(),
                                        nn.Conv2d(256, classes, 1)))

  def forward(self, x):
    if self.arch == "DLA34":
      maps = self.dla_up(self.base(x))[:3]  # strides 4, 8, 16
    else:
      maps = self.base(x)  # strides 4, 8, 16, 32
    self.ida_up(maps, 0, len(maps))
    states = self.convGRU(maps[-1])
    return {head: getattr(self, head)(states[GRU_STEP_OF_HEAD[head]]) for head in HEADS}


# ------------------------------------------------------------------------------------------------------
# The training loss, in the form of `centerpose_jax.training.losses` (TAO's ObjectPoseLoss per symmetric copy)


def _focal_loss(logits, target):
  """logits [B, C, h, w], target [B, S, h, w, C] -> [B, S] CornerNet focal loss (sigmoid clamped to 1e-4)."""
  pred = torch.sigmoid(logits.float()).clamp(1e-4, 1 - 1e-4).permute(0, 2, 3, 1)[:, None]
  positive, negative = target.eq(1).float(), target.lt(1).float()
  positive_sum = (torch.log(pred) * (1 - pred) ** 2 * positive).sum((2, 3, 4))
  negative_sum = (torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * negative).sum((2, 3, 4))
  num_positive = positive.sum((2, 3, 4))
  return torch.where(num_positive > 0, -(positive_sum + negative_sum) / num_positive.clamp(min=1), -negative_sum)


def _gather(feature, index):
  """feature [B, C, h, w] at flat grid indices [B, S, N] -> [B, S, N, C] (TAO's `_transpose_and_gather_feat`)."""
  batch, channels = feature.shape[:2]
  flat = feature.float().permute(0, 2, 3, 1).reshape(batch, 1, -1, channels).expand(-1, index.shape[1], -1, -1)
  return flat.gather(2, index.long()[..., None].expand(-1, -1, -1, channels))


def _masked_l1(pred, target, mask):
  """[B, S] sum |t m - p m| / (sum m + 1e-4) over the objects (mask [B, S, N] or [B, S, N, C])."""
  if mask.dim() == pred.dim() - 1:
    mask = mask[..., None].expand_as(pred)
  return (target * mask - pred * mask).abs().sum((2, 3)) / (mask.sum((2, 3)) + 1e-4)


def centerpose_loss(heads, batch, weights):
  """The weighted CenterPose loss with the best symmetric copy per sample, as `losses.compute_loss`.

  Args:
    heads: {head: [B, C, H, W]} logits of `CenterPoseTAO`.
    batch: torch tensors in the loader's layout (`losses.compute_loss`): hm [B, S, h, w, 1], ind [B, S, M], ...
      and sample_weight [B].
    weights: {head: weight} (`losses.loss_weights`).

  Returns:
    The scalar loss (float32).
  """
  per_copy = {
      "hm": _focal_loss(heads["hm"], batch["hm"]),
      "wh": _masked_l1(_gather(heads["wh"], batch["ind"]), batch["wh"], batch["reg_mask"]),
      "reg": _masked_l1(_gather(heads["reg"], batch["ind"]), batch["reg"], batch["reg_mask"]),
      "hps": _masked_l1(_gather(heads["hps"], batch["ind"]), batch["hps"], batch["hps_mask"]),
      "hm_hp": _focal_loss(heads["hm_hp"], batch["hm_hp"]),
      "hp_offset": _masked_l1(_gather(heads["hp_offset"], batch["hp_ind"]), batch["hp_offset"],
                              batch["hp_mask"]),
      "scale": _masked_l1(_gather(heads["scale"], batch["ind"]), batch["scale"], batch["reg_mask"]),
  }
  total = sum(weights[head] * value for head, value in per_copy.items())  # [B, S]
  valid = batch["ind"].sum(2) > 0
  choice = torch.where(valid, total.detach(), torch.full_like(total, math.inf)).argmin(1)  # [B]
  chosen = total.gather(1, choice[:, None])[:, 0]
  sample_weight = batch["sample_weight"].float()
  return (chosen * sample_weight).sum() / sample_weight.sum().clamp(min=1e-12)
