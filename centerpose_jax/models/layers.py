"""Layers shared by the CenterPose network parts, with PyTorch's semantics and initialisation.

Everything is NHWC with HWIO kernels. Parameter names are the ones the checkpoint converter
(`centerpose_jax.convert.pytorch`) maps from TAO's state_dict: `kernel` <- `weight`, `bias` <- `bias`,
norm `scale` <- `weight`, batch_stats `mean`/`var` <- `running_mean`/`running_var`. Parameters are float32;
`dtype` is the compute dtype.
"""

import math
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# PyTorch's default Conv2d weight init, kaiming_uniform(a=sqrt(5)): U(+-1 / sqrt(fan_in)),
# fan_in = k * k * C_in (Flax reads it from the HWIO kernel shape).
TORCH_CONV_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
BATCH_NORM_MOMENTUM = 0.9  # Flax convention; PyTorch's BN_MOMENTUM = 0.1.
NORM_EPSILON = 1e-5  # PyTorch's BatchNorm2d / GroupNorm default.


def torch_conv_bias_init(fan_in: int) -> Callable:
  """PyTorch's default Conv2d bias init: U(+-1 / sqrt(fan_in)), fan_in = k * k * C_in / groups."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Conv2d(nn.Module):
  """PyTorch Conv2d (groups=1) with symmetric zero padding given in pixels, as one XLA convolution.

  Params: `kernel` [k, k, C_in, features] (HWIO), `bias` [features] when `use_bias`.

  Attributes:
    features: output channels.
    kernel_size: k (square kernel).
    stride: s.
    padding: p pixels on every side, as PyTorch's `padding` (never 'SAME': for stride 2 and even sizes
      XLA's 'SAME' pads only at the end, PyTorch pads both sides).
    use_bias: whether the conv has a bias.
    bias_init: bias initializer; None gives PyTorch's default U(+-1 / sqrt(k * k * C_in)).
    dtype: compute dtype.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  bias_init: Optional[Callable] = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C_in] -> [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, features]."""
    k, p = self.kernel_size, self.padding
    in_features = x.shape[-1]
    kernel = self.param("kernel", TORCH_CONV_INIT, (k, k, in_features, self.features))
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), (self.stride, self.stride), ((p, p), (p, p)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    if self.use_bias:
      bias_init = self.bias_init or torch_conv_bias_init(k * k * in_features)
      y = y + self.param("bias", bias_init, (self.features,)).astype(self.dtype)
    return y


def batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """BatchNorm2d as TAO's (eps 1e-5, PyTorch momentum 0.1): batch statistics when training, else running ones.

  Under `jax.jit` with the batch sharded over a mesh the batch statistics are global (no axis_name needed).
  """
  return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, epsilon=NORM_EPSILON,
                      use_fast_variance=False, dtype=dtype, name=name)


def max_pool(x, stride: int):
  """PyTorch MaxPool2d(stride, stride): [B, H, W, C] -> [B, H // stride, W // stride, C]."""
  return nn.max_pool(x, window_shape=(stride, stride), strides=(stride, stride), padding="VALID")


def bilinear_upsample_kernel(kernel_size: int, channels: int) -> np.ndarray:
  """TAO's `fill_up_weights`: the bilinear interpolation kernel of a transposed conv, for every channel.

  With f = ceil(k / 2) and c = (2f - 1 - f % 2) / (2f), the 1-D profile is w[i] = 1 - |i / f - c|
  (k = 4: [0.25, 0.75, 0.75, 0.25]); the 2-D kernel is the outer product.

  Returns:
    [k, k, 1, channels] float32, in the layout of `DepthwiseUpsample.kernel`.
  """
  f = math.ceil(kernel_size / 2)
  c = (2 * f - 1 - f % 2) / (2.0 * f)
  profile = 1.0 - np.abs(np.arange(kernel_size) / f - c)
  kernel = np.outer(profile, profile).astype(np.float32)
  return np.repeat(kernel[:, :, None, None], channels, axis=3)


def _bilinear_init(key, shape, dtype=jnp.float32):
  del key  # deterministic
  k, _, _, channels = shape
  return jnp.asarray(bilinear_upsample_kernel(k, channels), dtype)


def _phase_taps(phase: int, factor: int, padding: int, kernel_size: int):
  """(input shift, kernel tap) pairs that reach output index factor * q + phase of a transposed conv.

  PyTorch's ConvTranspose2d writes input i through tap t to output o = i * factor + t - padding, so output
  factor * q + phase receives input q + shift through tap t for every t with t = (phase + padding) mod factor
  (mod factor), shift = ((phase + padding) - t) / factor.
  """
  offset = phase + padding
  return [((offset - t) // factor, t) for t in range(offset % factor, kernel_size, factor)]


class DepthwiseUpsample(nn.Module):
  """TAO's up layer: ConvTranspose2d(C, C, 2f, stride=f, padding=f // 2, groups=C, bias=False).

  Output [B, f * H, f * W, C]. Param `kernel` [2f, 2f, 1, C] holds PyTorch's weight [C, 1, 2f, 2f] in
  PyTorch's orientation (kernel[i, j, 0, c] = weight[c, 0, i, j]: no spatial flip), initialised to the
  bilinear kernel and trainable. Two formulations compute the same function:

  - grouped: `lax.conv_general_dilated` with `lhs_dilation` f and `feature_group_count` C on the flipped
    kernel (exports as ONNX ConvTranspose; the fast one on GPU/TPU);
  - phases: for each of the f x f output phases, a sum of 4 shifted input slices times per-channel kernel
    taps, interleaved into the output (2-3x faster than the grouped conv on XLA:CPU, forward and backward).

  Attributes:
    factor: upsampling factor f (even: TAO builds 2, 4 and 8).
    dtype: compute dtype.
    use_grouped_conv: force a formulation; None picks the phases on the CPU backend, the grouped conv
      elsewhere. ONNX export must force True.
  """
  factor: int
  dtype: Any = jnp.float32
  use_grouped_conv: Optional[bool] = None

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C] -> [B, factor * H, factor * W, C]."""
    f = self.factor
    if f < 2 or f % 2:
      raise ValueError(f"DepthwiseUpsample needs an even factor, got {f}")
    k, p = 2 * f, f // 2
    channels = x.shape[-1]
    kernel = self.param("kernel", _bilinear_init, (k, k, 1, channels)).astype(self.dtype)
    x = x.astype(self.dtype)
    grouped = self.use_grouped_conv
    if grouped is None:
      grouped = jax.default_backend() != "cpu"
    if grouped:
      pad = k - 1 - p
      return jax.lax.conv_general_dilated(
          x, kernel[::-1, ::-1], (1, 1), ((pad, pad), (pad, pad)), lhs_dilation=(f, f),
          dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)
    taps = [_phase_taps(phase, f, p, k) for phase in range(f)]
    margin = max(max(abs(shift) for shift, _ in phase_taps) for phase_taps in taps)
    height, width = x.shape[1:3]
    padded = jnp.pad(x, ((0, 0), (margin, margin), (margin, margin), (0, 0)))

    def shifted(dy, dx):
      return padded[:, margin + dy:margin + dy + height, margin + dx:margin + dx + width]

    rows = []
    for taps_y in taps:
      phases = []
      for taps_x in taps:
        out = 0.0
        for dy, ty in taps_y:
          for dx, tx in taps_x:
            out = out + shifted(dy, dx) * kernel[ty, tx, 0]
        phases.append(out)
      rows.append(jnp.stack(phases, axis=3))  # [B, H, W, f (x phase), C]
    out = jnp.stack(rows, axis=2)  # [B, H, f (y phase), W, f (x phase), C]
    return out.reshape(x.shape[0], f * height, f * width, channels)
