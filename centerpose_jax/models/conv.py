"""The networks' convolutions, each in two formulations: XLA's own ops, and one that is fast on XLA:CPU.

Every function computes PyTorch's operation (cross-correlation, symmetric zero padding in pixels) on NHWC
inputs with HWIO kernels, and takes `impl`:

- "auto" (the default): chosen per platform when the computation is lowered, with
  `jax.lax.platform_dependent`: the CPU formulation on "cpu", XLA's own ops on every other platform (cuDNN's
  and the TPU's kernels are the fast ones there). The choice follows the platform the function is compiled
  for, not the process's default backend, so a function exported for CUDA from a CPU machine gets XLA's ops.
- "native": XLA's ops everywhere (`conv_general_dilated`, grouped or input-dilated for the depthwise ones).
  ONNX export uses it: the graph then holds plain Conv / ConvTranspose nodes.
- "cpu": the CPU formulation everywhere (tests compare the two on one machine).

The CPU formulations, and why (measured on a 2-core x86-64, docs/benchmarks.md):
- Convs whose kernel equals their stride (1x1 convs, FAN's patch embeddings): one matrix product.
- 3x3 stride-1 float32 convs with at least 32 x 32 channels (Cin * Cout) on large maps (B * H_out * W_out, the
  `WINOGRAD_GRAD_MIN_*` constants: the heads, FAN's ConvGRU and neck nodes, DLA34's ConvGRU, neck and levels
  2-4): the input and weight gradients by Winograd F(4x4, 3x3) (`_winograd_backward`). XLA:CPU runs a weight
  gradient as a convolution whose window spans the whole feature map, 4-12x slower than its forward; the
  Winograd backward is 2-6x faster than XLA's gradients (DLA34's 64-channel convs at 2 x 128 x 128: 36 ms
  against 76 on the Xeon of December 2026, whose XLA forward convolutions are fast). With fewer channels
  (DLA34's level0) or positions (its level5 at 2x512) XLA's are as fast or faster.
- Their forward by Winograd F(4x4, 3x3) too (`_winograd_forward`) where Cin >= 64 and Cout >= 64 on at
  least 2048 output positions (`WINOGRAD_FORWARD_MIN_*`): the heads and the ConvGRU of both backbones (whose
  convs that read one map run as one there, `conv2d_shared_input`, 64 or 128 -> 192-768), 1.1-2x faster than
  XLA's convolution; DLA34's levels 2-4 and neck nodes, together 5-9 % of its train step. Its 36 batched
  products contract over Cin only, and XLA:CPU's matrix products run at 50-70 GFLOP/s with such short
  contractions against 86 for its convolution (125 at a contraction of 1152); what makes up for it is 4x fewer
  multiplications, once the transforms' memory traffic no longer page-faults (`host_memory`). It rounds
  differently from the direct sum: about 1e-6 of the largest output magnitude (fan_small's heads at 512x512
  move by 2e-5, 5e-6 without it, against outputs of std 0.5).
- Strided convs (kernel larger than the stride: DLA34's level1 and each level's first conv): XLA's forward, the
  kernel gradient as one matrix product over the input patches (`_patches_kernel_grad`), and with
  at most 32 input channels (level1, level2) the input gradient as one stride-1 convolution that yields every
  output phase (`_phase_input_grad`). Stride-1 convs with many channels on maps too small for the Winograd
  gradients (DLA34's level4 at 1 x 512 x 512, `PATCHES_GRAD_MIN_*`) take the same kernel gradient.
- Other convs: XLA's.
- Depthwise convs: a sum of k * k shifted multiply-adds (XLA:CPU's grouped convolution is 10-50x slower), with
  their own backward that keeps no shifted copies (`_shifted_depthwise`), the sum kept out of the next
  matrix product's YNNPACK fusion (`_unfused_by_ynnpack`).
- The depthwise transposed conv of the neck's up layers: per output phase, a sum of shifted multiply-adds,
  the phases interleaved (2-3x faster than the input-dilated grouped convolution).
"""

import functools
from typing import Callable, List, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

AUTO, NATIVE, CPU = "auto", "native", "cpu"
IMPLS = (AUTO, NATIVE, CPU)
_DIMENSIONS = ("NHWC", "HWIO", "NHWC")
# XLA:CPU's own gradients of a 3x3 conv are slow from about this Cin * Cout and this many output positions
# (B * H_out * W_out) on; below either they are as fast as the Winograd ones or faster (docs/benchmarks.md: the
# channel threshold was 128 * 128 until the DLA34 train step measured 20 % faster with this one on the Xeon of
# December 2026. The positions threshold was 2 * 128 * 128, then 2 * 64 * 64 (a 4-5 % gain); with this one
# DLA34's level4 (2 x 32 x 32 or 8 x 16 x 16) takes them too, and its train step measured 3-4.5 % faster).
WINOGRAD_GRAD_MIN_CHANNELS = 32 * 32
WINOGRAD_GRAD_MIN_POSITIONS = 2048
# 3x3 stride-1 float32 convs with at least these input and output channels and output positions run their
# forward by Winograd too. Its batched products contract over C_in, and XLA:CPU's matrix products are slow
# for short contractions; with huge pages (`host_memory`) 64 -> 768 is still 1.4-2x faster than XLA's
# convolution (docs/benchmarks.md). History on the Xeon of December 2026 (fan_small unchanged by each step):
# - outputs 256 -> 128: DLA34's merged ConvGRU (64 -> 3 x 64), inference forward 9-13 % faster;
# - positions 128 * 128 -> 2048: DLA34's levels 3-4 (2 x 64 x 64, 2 x 32 x 32 at 2x512), train step 3-4 % faster;
# - outputs 128 -> 64: DLA34's level2 and 64-channel neck nodes, train step another 2-3 % faster.
WINOGRAD_FORWARD_MIN_IN_CHANNELS = 64
WINOGRAD_FORWARD_MIN_OUT_CHANNELS = 64
WINOGRAD_FORWARD_MIN_POSITIONS = 2048
# Strided convs with at most this many input channels (DLA34's level1, 16 -> 32 at stride 2, and level2's first
# conv, 32 -> 64) take their input gradient as one stride-1 convolution that yields every output phase
# (`_phase_input_grad`): XLA:CPU runs the input-dilated convolution it would use without YNNPACK, 2-4x slower
# there (level2's: 64 ms at 2x512 on the Xeon of December 2026; the threshold was 16 before, and the DLA34 train
# step is 1-3 % faster with 32); from 64 channels on it is as fast.
PHASE_GRAD_MAX_IN_CHANNELS = 32
# Stride-1 convs (other than the Winograd ones) with at least this Cin * Cout and this many input positions
# (B * H * W) take their kernel gradient as a matrix product over the input patches (`_patches_kernel_grad`):
# DLA34's level4 (256 channels at 2 x 32 x 32, before it took the Winograd gradients), whose XLA kernel gradients
# took 30-37 ms each, a 5 % faster train step at 2x512 on the Xeon of December 2026; now level4 at batch 1. On
# FAN's 8 x 8 token grid (768 -> 128) XLA's is faster.
PATCHES_GRAD_MIN_CHANNELS = 128 * 128
PATCHES_GRAD_MIN_POSITIONS = 1024

# Name scope of the weight-gradient ops the CPU formulations compute themselves (bench/train_step_profile.py).
WEIGHT_GRAD_SCOPE = "weight_grad"

# Winograd F(4x4, 3x3) on the points 0, +-1, +-2 and infinity (Lavin & Gray, 2016): a 3x3 correlation of a
# 6x6 tile d with kernel g gives the 4x4 outputs A^T [(G g G^T) * (B^T d B)] A.
_WINOGRAD_BT = np.array(((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0),
                         (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)), np.float32)
_WINOGRAD_G = np.array(((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6), (1 / 24, 1 / 12, 1 / 6),
                        (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)), np.float32)
_WINOGRAD_AT = np.array(((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
                        np.float32)
# The 2-D transforms of a tile flattened row-major, as one matrix each: input [36, 36], output [16, 36] and
# kernel [36, 9].
_WINOGRAD_INPUT = np.kron(_WINOGRAD_BT, _WINOGRAD_BT)
_WINOGRAD_OUTPUT = np.kron(_WINOGRAD_AT, _WINOGRAD_AT)
_WINOGRAD_KERNEL = np.kron(_WINOGRAD_G, _WINOGRAD_G)


def per_platform(native: Callable, cpu: Callable, impl: str, *args):
  """`cpu(*args)` or `native(*args)` as `impl` says ("auto": by the platform the computation is lowered for)."""
  if impl == NATIVE:
    return native(*args)
  if impl == CPU:
    return cpu(*args)
  if impl != AUTO:
    raise ValueError(f"unknown convolution impl {impl!r}; expected one of {IMPLS}")
  return jax.lax.platform_dependent(*args, cpu=cpu, default=native)


def materialised(x: jax.Array) -> jax.Array:
  """x, bit for bit, computed once into its own buffer on XLA:CPU before anything consumes it.

  x becomes the operand of a conditional, which XLA cannot fuse into its consumers, and whose predicate (an
  element equals itself) it cannot fold. Without it XLA:CPU may fuse the computation of x (a transpose, a
  chain of adds) into each consumer and redo it there. An optimization barrier does not do it: XLA:CPU removes
  barriers before fusing. For the CPU formulations (use it under `per_platform` elsewhere).
  """
  first = x.reshape(-1)[0]
  # The second branch differs from the first in form only (XLA drops a conditional whose branches are the same
  # computation); negating twice returns every value bit for bit, NaN included.
  return jax.lax.cond(first == first, lambda v: v, lambda v: -(-v), x)


# ----------------------------------------------------------------------------------------------------
# Dense convolutions


def conv2d(x: jax.Array, kernel: jax.Array, stride: int = 1, padding: int = 0, impl: str = AUTO) -> jax.Array:
  """PyTorch Conv2d (groups=1, no bias): x [B, H, W, C], kernel [k, k, C, K] ->
  [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, K], in x's dtype."""
  native = functools.partial(_native_conv, stride=stride, padding=padding)
  cpu = functools.partial(_cpu_conv, stride=stride, padding=padding)
  return per_platform(native, cpu, impl, x, kernel)


def _native_conv(x, kernel, *, stride: int, padding: int):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((padding, padding), (padding, padding)),
                                      dimension_numbers=_DIMENSIONS)


def conv2d_shared_input(x: jax.Array, kernels: Sequence[jax.Array], stride: int = 1, padding: int = 0,
                        impl: str = AUTO) -> List[jax.Array]:
  """[conv2d(x, kernel, stride, padding, impl) for kernel in kernels] (kernels [k, k, C, K_i], one k).

  The CPU formulation runs them as one convolution, the kernels concatenated along the output axis and the
  result split, where that convolution takes the Winograd forward (module docstring): its products are then
  wider and the input transform is shared. Elsewhere each runs alone: XLA:CPU's own convolution is 0.8-0.9x
  as fast merged (3 x 64 -> 256 at 128x128, docs/benchmarks.md), and GPUs keep the layers as they are.
  """
  native = lambda x, kernels: [_native_conv(x, kernel, stride=stride, padding=padding) for kernel in kernels]
  cpu = functools.partial(_cpu_conv_shared_input, stride=stride, padding=padding)
  return per_platform(native, cpu, impl, x, list(kernels))


def _cpu_conv_shared_input(x, kernels, *, stride: int, padding: int):
  merged = jnp.concatenate(kernels, axis=-1)
  if len(kernels) > 1 and _winograd_parts(x, merged, stride, padding)[0]:
    y = _cpu_conv(x, merged, stride=stride, padding=padding)
    return jnp.split(y, np.cumsum([kernel.shape[-1] for kernel in kernels])[:-1], axis=-1)
  return [_cpu_conv(x, kernel, stride=stride, padding=padding) for kernel in kernels]


def _winograd_parts(x, kernel, stride: int, padding: int) -> Tuple[bool, bool]:
  """Whether the CPU formulation computes this conv's forward, and its gradients, by Winograd."""
  k, _, channels, features = kernel.shape
  if not (k == 3 and stride == 1 and x.dtype == jnp.float32):
    return False, False
  positions = x.shape[0] * (x.shape[1] + 2 * padding - 2) * (x.shape[2] + 2 * padding - 2)
  forward = (channels >= WINOGRAD_FORWARD_MIN_IN_CHANNELS and features >= WINOGRAD_FORWARD_MIN_OUT_CHANNELS
             and positions >= WINOGRAD_FORWARD_MIN_POSITIONS)
  backward = channels * features >= WINOGRAD_GRAD_MIN_CHANNELS and positions >= WINOGRAD_GRAD_MIN_POSITIONS
  return forward, backward


def _cpu_conv(x, kernel, *, stride: int, padding: int):
  """The CPU formulation of `conv2d` for this shape (module docstring)."""
  k = kernel.shape[0]
  if k == stride and padding == 0:
    return _patch_conv(x, kernel)
  winograd_forward, winograd_backward = _winograd_parts(x, kernel, stride, padding)
  if winograd_forward or winograd_backward:
    return _conv3x3(x, kernel, padding, winograd_forward, winograd_backward)
  strided = stride > 1 and k > stride
  wide_on_small_map = (k > 1 and kernel.shape[2] * kernel.shape[3] >= PATCHES_GRAD_MIN_CHANNELS
                       and x.shape[0] * x.shape[1] * x.shape[2] >= PATCHES_GRAD_MIN_POSITIONS)
  if strided or wide_on_small_map:
    return _patches_grad_conv(x, kernel, stride, padding)
  return _native_conv(x, kernel, stride=stride, padding=padding)


def _patch_conv(x, kernel):
  """A conv with kernel == stride and no padding (1x1 included) as one matrix product over the patches."""
  k, _, channels, features = kernel.shape
  batch, height, width, _ = x.shape
  rows, cols = height // k, width // k
  patches = x[:, :rows * k, :cols * k].reshape(batch, rows, k, cols, k, channels)
  return jnp.einsum("bykxlc,klcf->byxf", patches, kernel.astype(x.dtype))


def _winograd_tiles(x, padding: int, tiles_y: int, tiles_x: int):
  """The transformed 6x6 input tiles at stride 4 (B^T d B) of x [B, H, W, C] zero-padded by `padding` pixels
  (and at the end up to the tiles): [36, B * tiles_y * tiles_x, C]."""
  height, width, channels = x.shape[1:]
  padded = jnp.pad(x, ((0, 0), (padding, 4 * tiles_y + 2 - height - padding),
                       (padding, 4 * tiles_x + 2 - width - padding), (0, 0)))
  views = jnp.stack([padded[:, i:i + 4 * tiles_y - 3:4, j:j + 4 * tiles_x - 3:4]
                     for i in range(6) for j in range(6)])  # [36 (i, j), B, ty, tx, C]
  return (_WINOGRAD_INPUT @ views.reshape(36, -1)).reshape(36, -1, channels)


def _winograd_kernel(kernel):
  """G g G^T of a [3, 3, C, K] kernel: [36, C, K]. One [36, 9] x [9, C * K] matrix product: as an einsum over
  the two 3-point axes XLA:CPU transposed the kernel and took 5-8 ms for 64 x 768 channels instead of ~1."""
  return (_WINOGRAD_KERNEL @ kernel.reshape(9, -1)).reshape(36, *kernel.shape[2:])


def _winograd_forward(x, kernel, padding: int):
  """A 3x3 stride-1 conv by Winograd F(4x4, 3x3): the transformed input tiles times the transformed kernel,
  one batched matrix product per tile position ([36, tiles, C] x [36, C, K]), then the output transform
  (A^T m A) of each tile; 2.25 multiplications per output and weight instead of 9."""
  batch, height, width, _ = x.shape
  features = kernel.shape[-1]
  out_h, out_w = height + 2 * padding - 2, width + 2 * padding - 2
  tiles_y, tiles_x = -(-out_h // 4), -(-out_w // 4)
  products = jnp.einsum("tnc,tck->tnk", _winograd_tiles(x, padding, tiles_y, tiles_x), _winograd_kernel(kernel))
  out = (_WINOGRAD_OUTPUT @ products.reshape(36, -1)).reshape(4, 4, batch, tiles_y, tiles_x, features)
  out = out.transpose(2, 3, 0, 4, 1, 5).reshape(batch, 4 * tiles_y, 4 * tiles_x, features)
  return out[:, :out_h, :out_w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv3x3(x, kernel, padding: int, winograd_forward: bool, winograd_backward: bool):
  """A 3x3 stride-1 conv whose forward (`_winograd_forward`) and / or input and weight gradients
  (`_winograd_backward`) are computed by Winograd F(4x4, 3x3), the others by XLA's convolutions."""
  return (_winograd_forward if winograd_forward else _native_3x3)(x, kernel, padding)


def _native_3x3(x, kernel, padding: int):
  return _native_conv(x, kernel, stride=1, padding=padding)


def _conv3x3_fwd(x, kernel, padding, winograd_forward, winograd_backward):
  del winograd_backward
  y = _conv3x3(x, kernel, padding, winograd_forward, False)
  # In a train step XLA:CPU fused the Winograd output's tile transpose into each consumer (the heads' bias, norm,
  # ReLU, their linearisation), 100-120 ms each for fan_small's heads at 2x512; computed once the step takes
  # 6.9 s instead of 7.8. The inference forward (no VJP) fuses well as it is and stays unchanged.
  return (materialised(y) if winograd_forward else y), (x, kernel)


def _conv3x3_bwd(padding, winograd_forward, winograd_backward, residuals, grad):
  del winograd_forward
  if winograd_backward:
    return _winograd_backward(padding, residuals, grad)
  return jax.vjp(functools.partial(_native_3x3, padding=padding), *residuals)[1](grad)


def _winograd_backward(padding, residuals, grad):
  """The input and weight gradients of a 3x3 stride-1 conv by Winograd F(4x4, 3x3).

  The input's 6x6 tiles at stride 4 (B^T d B) and the output gradient's 4x4 tiles (A g A^T) are each
  transformed as one matrix product with the flattened 2-D transform, then per tile position (36) one
  batched matrix product gives the transformed weight gradient ([36, C, tiles] x [36, tiles, K]) and one the
  transformed input gradient ([36, tiles, K] x [36, K, C]); the input gradient's tiles overlap by 2 pixels,
  so each pixel phase sums at most 4 of them. 2.25 multiplications per output and weight instead of 9.
  """
  x, kernel = residuals
  batch, height, width, channels = x.shape
  features = kernel.shape[-1]
  tiles_y, tiles_x = -(-grad.shape[1] // 4), -(-grad.shape[2] // 4)
  tiles = _winograd_tiles(x, padding, tiles_y, tiles_x)  # [36, N, C]
  grad = jnp.pad(grad, ((0, 0), (0, 4 * tiles_y - grad.shape[1]), (0, 4 * tiles_x - grad.shape[2]), (0, 0)))
  grad = grad.reshape(batch, tiles_y, 4, tiles_x, 4, features).transpose(2, 4, 0, 1, 3, 5)
  grad_products = (_WINOGRAD_OUTPUT.T @ grad.reshape(16, -1)).reshape(36, -1, features)  # A g A^T: [36, N, K]
  with jax.named_scope(WEIGHT_GRAD_SCOPE):
    grad_kernel_t = jnp.einsum("tnc,tnk->tck", tiles, grad_products)  # [36, C, K]
    grad_kernel = (_WINOGRAD_KERNEL.T @ grad_kernel_t.reshape(36, -1)).reshape(3, 3, channels, features)
  grad_tiles = jnp.einsum("tnk,tck->tnc", grad_products, _winograd_kernel(kernel))
  grad_views = (_WINOGRAD_INPUT.T @ grad_tiles.reshape(36, -1)).reshape(6, 6, batch, tiles_y, tiles_x, channels)

  def placed(i, j):  # view (i, j) of tile (t, s) is padded pixel (4t + i, 4s + j): tiles i, j >= 4 shift by one
    return jnp.pad(grad_views[i, j], ((0, 0), (i // 4, 1 - i // 4), (j // 4, 1 - j // 4), (0, 0)))

  phases = [jnp.stack([functools.reduce(jnp.add, [placed(i, j) for i in (p, p + 4) if i < 6
                                                  for j in (q, q + 4) if j < 6]) for q in range(4)], axis=3)
            for p in range(4)]  # [B, ty + 1, tx + 1, 4 (q), C] per p
  grad_x = jnp.stack(phases, axis=2).reshape(batch, 4 * tiles_y + 4, 4 * tiles_x + 4, channels)
  return grad_x[:, padding:padding + height, padding:padding + width], grad_kernel


_conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _patches_grad_conv(x, kernel, stride: int, padding: int):
  """XLA's conv, whose kernel gradient is `_patches_kernel_grad` and input gradient `_phase_input_grad` (strided,
  at most PHASE_GRAD_MAX_IN_CHANNELS inputs) or XLA's."""
  return _native_conv(x, kernel, stride=stride, padding=padding)


def _patches_grad_conv_fwd(x, kernel, stride, padding):
  return _native_conv(x, kernel, stride=stride, padding=padding), (x, kernel)


def _patches_grad_conv_bwd(stride, padding, residuals, grad):
  x, kernel = residuals
  with jax.named_scope(WEIGHT_GRAD_SCOPE):
    grad_kernel = _patches_kernel_grad(x, grad, kernel.shape[0], stride, padding)
  if stride > 1 and kernel.shape[2] <= PHASE_GRAD_MAX_IN_CHANNELS:
    grad_x = _phase_input_grad(grad, kernel, stride, padding, x.shape)
  else:
    grad_x = jax.vjp(lambda v: _native_conv(v, kernel, stride=stride, padding=padding), x)[1](grad)[0]
  return grad_x, grad_kernel.astype(kernel.dtype)


def _patches_kernel_grad(x, grad, k: int, stride: int, padding: int):
  """The kernel gradient [k, k, C, K] of a conv of x [B, H, W, C] with output gradient grad
  [B, H_out, W_out, K], as one matrix product: grad^T [K, N] x the input patches [N, k * k * C].

  XLA:CPU computes it as a convolution whose window spans both whole maps (dilated for strided convs), slowly:
  DLA34's level1 (16 -> 32 at stride 2, 2 x 512 x 512) took 103 ms, plus 20 ms of transposes, for 0.6 GFLOP.
  """
  _, out_h, out_w, features = grad.shape
  padded = jnp.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
  patches = jnp.stack([padded[:, i:i + stride * (out_h - 1) + 1:stride, j:j + stride * (out_w - 1) + 1:stride]
                       for i in range(k) for j in range(k)], axis=3)  # [B, H_out, W_out, k * k, C]
  products = grad.reshape(-1, features).T @ patches.reshape(grad.size // features, -1)  # [K, k * k * C]
  return products.reshape(features, k, k, x.shape[-1]).transpose(1, 2, 3, 0)


def _phase_input_grad(grad, kernel, stride: int, padding: int, input_shape):
  """The input gradient of a strided conv (kernel [k, k, C, K], k > stride) as one stride-1 convolution.

  Input pixel s * q + phase receives grad[q + shift] through tap t for the (shift, t) pairs of
  `_phase_taps` (a transposed conv). All s * s phases come out of one VALID convolution of the output
  gradient grad [B, H_out, W_out, K] over the shifts, with a kernel [shifts, shifts, K, s * s * C] that holds
  each phase's taps (zeros where a phase has none), and are then interleaved: [B, H, W, C] of input_shape.
  """
  k, _, channels, _ = kernel.shape
  batch, height, width, _ = input_shape
  taps = [dict(_phase_taps(phase, stride, padding, k)) for phase in range(stride)]  # shift -> tap, per phase
  low = min(min(phase_taps) for phase_taps in taps)
  size = max(max(phase_taps) for phase_taps in taps) - low + 1
  tap = np.zeros((size, stride), np.int32)  # [shift - low, phase] -> kernel tap (0 where the phase has none)
  used = np.zeros((size, stride), np.float32)
  for shift in range(size):
    for phase in range(stride):
      if shift + low in taps[phase]:
        tap[shift, phase], used[shift, phase] = taps[phase][shift + low], 1
  combined = kernel[tap[:, None, :, None], tap[None, :, None, :]]  # [size, size, s (y phase), s (x phase), C, K]
  combined *= (used[:, None, :, None] * used[None, :, None, :])[..., None, None].astype(kernel.dtype)
  combined = combined.transpose(0, 1, 5, 2, 3, 4).reshape(size, size, -1, stride * stride * channels)
  rows, cols = -(-height // stride), -(-width // stride)  # output phase positions q per axis

  def gathered(axis_len, positions):  # pads grad so that row q + shift exists for every q and shift
    return (max(0, -low), max(0, positions - 1 + low + size - 1 - (axis_len - 1)))

  padded = jnp.pad(grad, ((0, 0), gathered(grad.shape[1], rows), gathered(grad.shape[2], cols), (0, 0)))
  padded = padded[:, max(0, low):, max(0, low):]
  phases = jax.lax.conv_general_dilated(padded, combined, (1, 1), "VALID", dimension_numbers=_DIMENSIONS)
  phases = phases[:, :rows, :cols].reshape(batch, rows, cols, stride, stride, channels)
  out = phases.transpose(0, 1, 3, 2, 4, 5).reshape(batch, rows * stride, cols * stride, channels)
  return out[:, :height, :width]


_patches_grad_conv.defvjp(_patches_grad_conv_fwd, _patches_grad_conv_bwd)


# ----------------------------------------------------------------------------------------------------
# Depthwise convolutions


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, impl: str = AUTO) -> jax.Array:
  """PyTorch Conv2d(C, C, k, padding=k // 2, groups=C, no bias): x [B, H, W, C], kernel [k, k, 1, C] ->
  [B, H, W, C] (k odd)."""
  return per_platform(_native_depthwise, _shifted_depthwise, impl, x, kernel)


def _native_depthwise(x, kernel):
  pad = kernel.shape[0] // 2
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((pad, pad), (pad, pad)), dimension_numbers=_DIMENSIONS,
                                      feature_group_count=x.shape[-1])


def _unfused_by_ynnpack(x):
  """x unchanged (float32 rounded to float32's own bits), as an op that XLA:CPU's YNNPACK fusions do not take.

  XLA:CPU hands a matrix product to YNNPACK together with the element-wise ops around it that YNNPACK
  supports. Where those are a depthwise conv's k * k shifted multiply-adds (ConvNeXt: 7x7 conv, LayerNorm,
  1x1 conv), YNNPACK gets the shifted copies and the broadcast kernel taps as materialised [B, H, W, C]
  inputs; a reduce-precision, which YNNPACK does not support, keeps the sum in XLA's one fused loop:
  1.7x faster ConvNeXt block forward (docs/benchmarks.md). A no-op for every floating dtype of at most
  float32's bits.
  """
  return jax.lax.reduce_precision(x, exponent_bits=8, mantissa_bits=23)


def _depthwise_taps(x, kernel):
  """The depthwise correlation as a sum of k * k shifted multiply-adds, in one fused loop on XLA:CPU."""
  k, pad = kernel.shape[0], kernel.shape[0] // 2
  height, width = x.shape[1:3]
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  taps = [padded[:, i:i + height, j:j + width] * kernel[i, j, 0] for i in range(k) for j in range(k)]
  return _unfused_by_ynnpack(functools.reduce(jnp.add, taps))


@jax.custom_vjp
def _shifted_depthwise(x, kernel):
  """`_depthwise_taps` with its own backward, which keeps only x for it.

  Differentiated as is, the k * k shifted copies of x are residuals: XLA:CPU keeps them all from the forward
  to the backward (49 copies of the input for a 7x7 kernel, GiBs in FAN's ConvNeXt stages). Here the input
  gradient is the same sum of shifted multiply-adds on the output gradient with the kernel flipped, and the
  kernel gradient is one reduction per tap over a shifted view of x, looped (`lax.map`) so that one view
  at a time exists: 2-3x faster forward + backward on XLA:CPU, tens of MiB of temporaries instead of
  k * k copies (docs/benchmarks.md).
  """
  return _depthwise_taps(x, kernel)


def _shifted_depthwise_fwd(x, kernel):
  return _depthwise_taps(x, kernel), (x, kernel)


def _shifted_depthwise_bwd(residuals, grad):
  x, kernel = residuals
  k, pad = kernel.shape[0], kernel.shape[0] // 2
  batch, height, width, channels = x.shape
  grad_x = _depthwise_taps(grad, kernel[::-1, ::-1])
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

  def tap_gradient(tap):  # sum over b, y, x of x_padded[b, y + i, x + j] * grad[b, y, x] for tap (i, j)
    view = jax.lax.dynamic_slice(padded, (0, tap // k, tap % k, 0), (batch, height, width, channels))
    return jnp.sum(view * grad, axis=(0, 1, 2), dtype=jnp.float32)

  with jax.named_scope(WEIGHT_GRAD_SCOPE):
    grad_kernel = jax.lax.map(tap_gradient, jnp.arange(k * k))
  return grad_x, grad_kernel.reshape(kernel.shape).astype(kernel.dtype)


_shifted_depthwise.defvjp(_shifted_depthwise_fwd, _shifted_depthwise_bwd)


def _phase_taps(phase: int, factor: int, padding: int, kernel_size: int) -> Sequence[Tuple[int, int]]:
  """(input shift, kernel tap) pairs that reach output index factor * q + phase of a transposed conv.

  PyTorch's ConvTranspose2d writes input i through tap t to output o = i * factor + t - padding, so output
  factor * q + phase receives input q + shift through tap t for every t with t = (phase + padding) mod factor
  (mod factor), shift = ((phase + padding) - t) / factor.
  """
  offset = phase + padding
  return [((offset - t) // factor, t) for t in range(offset % factor, kernel_size, factor)]


def depthwise_conv_transpose(x: jax.Array, kernel: jax.Array, factor: int, impl: str = AUTO) -> jax.Array:
  """PyTorch ConvTranspose2d(C, C, 2f, stride=f, padding=f // 2, groups=C, bias=False) with f = `factor` even:
  x [B, H, W, C], kernel [2f, 2f, 1, C] in PyTorch's orientation (kernel[i, j, 0, c] = weight[c, 0, i, j], no
  spatial flip) -> [B, f * H, f * W, C]."""
  if factor < 2 or factor % 2:
    raise ValueError(f"depthwise_conv_transpose needs an even factor, got {factor}")
  native = functools.partial(_native_conv_transpose, factor=factor)
  phases = functools.partial(_phase_conv_transpose, factor=factor)
  return per_platform(native, phases, impl, x, kernel)


def _native_conv_transpose(x, kernel, *, factor: int):
  """The input-dilated grouped convolution with the flipped kernel (ONNX ConvTranspose)."""
  pad = 2 * factor - 1 - factor // 2
  return jax.lax.conv_general_dilated(x, kernel[::-1, ::-1], (1, 1), ((pad, pad), (pad, pad)),
                                      lhs_dilation=(factor, factor), dimension_numbers=_DIMENSIONS,
                                      feature_group_count=x.shape[-1])


def _phase_conv_transpose(x, kernel, *, factor: int):
  """Each of the f x f output phases as a sum of 4 shifted inputs times kernel taps, interleaved."""
  f, k, p = factor, 2 * factor, factor // 2
  batch, height, width, channels = x.shape
  taps = [_phase_taps(phase, f, p, k) for phase in range(f)]
  margin = max(abs(shift) for phase_taps in taps for shift, _ in phase_taps)
  padded = jnp.pad(x, ((0, 0), (margin, margin), (margin, margin), (0, 0)))

  def phase(taps_y, taps_x):
    return functools.reduce(jnp.add, [
        padded[:, margin + dy:margin + dy + height, margin + dx:margin + dx + width] * kernel[ty, tx, 0]
        for dy, ty in taps_y for dx, tx in taps_x])

  rows = [jnp.stack([phase(taps_y, taps_x) for taps_x in taps], axis=3) for taps_y in taps]  # [B, H, W, f, C]
  out = jnp.stack(rows, axis=2)  # [B, H, f (y phase), W, f (x phase), C]
  return out.reshape(batch, f * height, f * width, channels)
