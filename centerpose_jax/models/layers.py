"""Layers shared by the CenterPose network parts, with PyTorch's semantics and initialisation, and `ModuleDefs`.

Everything is NHWC with HWIO kernels. Parameter names are the ones the checkpoint converter
(`centerpose_jax.convert.pytorch`) maps from TAO's state_dict: `kernel` <- `weight`, `bias` <- `bias`,
norm `scale` <- `weight`, batch_stats `mean`/`var` <- `running_mean`/`running_var`. Parameters are float32;
`dtype` is the compute dtype.

The network modules do not take the compute dtype, the convolutions' formulation or the rematerialisation
switch: the top-level model resolves them once into a `ModuleDefs` (the layer constructors, as flax's ResNet
takes `conv` and `norm` ModuleDefs) and every module builds its layers from the one it is given.
"""

import dataclasses
import functools
import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

from flax.core import lift as flax_lift
import flax.linen as nn
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np

from centerpose_jax.models import conv

# PyTorch's default Conv2d weight init, kaiming_uniform(a=sqrt(5)): U(+-1 / sqrt(fan_in)),
# fan_in = k * k * C_in (Flax reads it from the HWIO kernel shape).
TORCH_CONV_INIT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
BATCH_NORM_MOMENTUM = 0.9  # Flax convention; PyTorch's BN_MOMENTUM = 0.1.
NORM_EPSILON = 1e-5  # PyTorch's BatchNorm2d / GroupNorm default.
MLP_RATIO = 4  # hidden width / width of the transformer and ConvNeXt MLPs (timm's mlp_ratio)
# Initializers matching TAO's from-scratch init. timm's trunc_normal_(std=.02) truncates at +-2 absolute,
# i.e. +-100 std, so it is a plain normal.
TAO_NORMAL_INIT = nn.initializers.normal(0.02)
ModuleDef = Any  # a Module class or a functools.partial of one (flax's examples' name)


def torch_conv_bias_init(fan_in: int) -> Callable:
  """PyTorch's default Conv2d bias init: U(+-1 / sqrt(fan_in)), fan_in = k * k * C_in / groups."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Conv2d(nn.Module):
  """PyTorch Conv2d, dense (groups=1) or depthwise (groups = C_in = features), with symmetric zero padding given
  in pixels (`conv.conv2d`, `conv.depthwise_conv2d`).

  Params: `kernel` [k, k, C_in / groups, features] (HWIO), `bias` [features] when `use_bias`.

  Attributes:
    features: output channels.
    kernel_size: k (square kernel).
    stride: s.
    padding: p pixels on every side, as PyTorch's `padding` (never 'SAME': for stride 2 and even sizes
      XLA's 'SAME' pads only at the end, PyTorch pads both sides).
    use_bias: whether the conv has a bias.
    kernel_init: kernel initializer (default: PyTorch's).
    bias_init: bias initializer; None gives PyTorch's default U(+-1 / sqrt(k * k * C_in / groups)).
    groups: 1 (dense) or C_in (depthwise: features = C_in, odd k, stride 1, padding k // 2, as FAN and
      ConvNeXt use it).
    dtype: compute dtype.
    conv_impl: formulation (`conv.IMPLS`): "auto" picks per platform, "native" is XLA's convolution (ONNX Conv).
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Callable = TORCH_CONV_INIT
  bias_init: Optional[Callable] = None
  groups: int = 1
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO

  @nn.compact
  def weights(self, in_features: int) -> Tuple[jax.Array, Optional[jax.Array]]:
    """The layer's kernel [k, k, in_features / groups, features] and bias [features] (None without one), in the
    compute dtype; declares them (PyTorch's initialisation) when the model is initialised."""
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, in_features // self.groups, self.features))
    bias = None
    if self.use_bias:
      bias_init = self.bias_init or torch_conv_bias_init(k * k * in_features // self.groups)
      bias = self.param("bias", bias_init, (self.features,)).astype(self.dtype)
    return kernel.astype(self.dtype), bias

  def __call__(self, x):
    """x: [B, H, W, C_in] -> [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, features]."""
    k = self.kernel_size
    in_features = x.shape[-1]
    depthwise = self.groups != 1
    if depthwise and not (self.groups == in_features == self.features and k % 2 and self.stride == 1
                          and self.padding == k // 2):
      raise ValueError(f"Conv2d supports groups=1 or depthwise groups=C_in=features with odd k, stride 1, padding "
                       f"k // 2; got groups {self.groups}, C_in {in_features}, features {self.features}, k {k}, "
                       f"stride {self.stride}, padding {self.padding}")
    kernel, bias = self.weights(in_features)
    x = x.astype(self.dtype)
    if depthwise:
      y = conv.depthwise_conv2d(x, kernel, self.conv_impl)
    else:
      y = conv.conv2d(x, kernel, self.stride, self.padding, self.conv_impl)
    return y if bias is None else y + bias


def shared_input_conv(convs: Sequence[Conv2d], x: jax.Array) -> List[jax.Array]:
  """[conv(x) for conv in convs] for dense `Conv2d` layers that share kernel size, stride, padding, dtype and
  formulation, through `conv.conv2d_shared_input` (on the CPU one convolution of the kernels concatenated,
  where that takes the Winograd forward). Each layer keeps its own parameters (the same tree as calling each).

  x: [B, H, W, C_in] -> one [B, H_out, W_out, conv.features] per layer.
  """
  return [y if bias is None else y + bias for y, bias in shared_input_conv_unbiased(convs, x)]


def shared_input_conv_unbiased(convs: Sequence[Conv2d], x: jax.Array) -> List[Tuple[jax.Array, Optional[jax.Array]]]:
  """`shared_input_conv` with each layer's bias returned instead of added: one (conv(x) - bias, bias) per layer
  (bias [features], None without one), for a consumer that folds the bias into its own pass (`GroupNorm`'s
  shift)."""
  first = convs[0]
  for layer in convs:
    if (layer.groups, layer.kernel_size, layer.stride, layer.padding, layer.dtype, layer.conv_impl) != (
        1, first.kernel_size, first.stride, first.padding, first.dtype, first.conv_impl):
      raise ValueError("shared_input_conv needs dense convs with one kernel size, stride, padding, dtype and impl")
  weights = [layer.weights(x.shape[-1]) for layer in convs]
  outputs = conv.conv2d_shared_input(x.astype(first.dtype), [kernel for kernel, _ in weights], first.stride,
                                     first.padding, first.conv_impl)
  return [(y, bias) for y, (_, bias) in zip(outputs, weights)]


# BatchNorm2d as TAO's (eps 1e-5, PyTorch momentum 0.1); called with use_running_average=not train. Under
# `jax.jit` with the batch sharded over a mesh the batch statistics are global (no axis_name needed).
BatchNorm = functools.partial(nn.BatchNorm, momentum=BATCH_NORM_MOMENTUM, epsilon=NORM_EPSILON,
                              use_fast_variance=False)
# LayerNorm over the last axis with two-pass variance, as PyTorch; called with the layer's epsilon.
LayerNorm = functools.partial(nn.LayerNorm, use_fast_variance=False)


class GroupNorm(nn.Module):
  """PyTorch's GroupNorm (eps 1e-5, two-pass variance) on [B, H, W, C], with flax's `nn.GroupNorm` parameters
  ("scale" and "bias", [C]), so checkpoints are interchangeable with it.

  The group statistics come from per-channel sums over H and W, which are then summed over each group's
  channels; the normalisation is one per-channel multiply-add. XLA:CPU reduces over [B, H*W, G, C/G] at a
  fraction of its bandwidth: this way the forward of TAO's head norm (8 x 64 x 64 x 256) takes 9.5 ms
  instead of 18 and its backward a third of the time (docs/benchmarks.md). Statistics in float32.

  Attributes:
    num_groups: groups G (C % G == 0).
    epsilon: added to the variance.
    dtype: output dtype (None: the input's).
    param_dtype: dtype of scale and bias.
  """
  num_groups: int
  epsilon: float = NORM_EPSILON
  dtype: Optional[jnp.dtype] = None
  param_dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x, shift=None):
    """x: [B, H, W, C] -> [B, H, W, C] in `dtype`: the norm of x + shift ([C], e.g. the bias of the conv that
    made x; None: 0) without computing x + shift on its own (one pass less over x)."""
    channels = x.shape[-1]
    if channels % self.num_groups:
      raise ValueError(f"GroupNorm: {channels} channels do not split into {self.num_groups} groups")
    scale = self.param("scale", nn.initializers.ones, (channels,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (channels,), self.param_dtype)
    x32 = x.astype(jnp.float32)
    shift = jnp.zeros((channels,), jnp.float32) if shift is None else shift.astype(jnp.float32)
    per_group = channels // self.num_groups
    count = x.shape[1] * x.shape[2] * per_group

    def group_mean(per_channel_sum):  # [B, C] -> each channel's group mean, [B, C]
      sums = per_channel_sum.reshape(-1, self.num_groups, per_group).sum(axis=-1)
      return jnp.repeat(sums / count, per_group, axis=-1)

    offset = shift - group_mean(x32.sum(axis=(1, 2)) + x.shape[1] * x.shape[2] * shift)  # [B, C]: x + offset is centred
    variance = group_mean(jnp.square(x32 + offset[:, None, None, :]).sum(axis=(1, 2)))
    factor = jax.lax.rsqrt(variance + self.epsilon) * scale.astype(jnp.float32)
    y = x32 * factor[:, None, None, :] + (bias.astype(jnp.float32) + offset * factor)[:, None, None, :]
    return y.astype(self.dtype or x.dtype)


# Linear layer with TAO's init (normal std 0.02, zero bias); kernel [in, out].
Dense = functools.partial(nn.Dense, kernel_init=TAO_NORMAL_INIT)


class UnbiasedLayerNorm(nn.Module):
  """LayerNorm over the last axis that divides the squared deviations by C - 1 (Bessel-corrected variance).

  TAO's ConvNeXt LayerNorm2d takes this path whenever its NCHW input is not contiguous: the stem's
  LayerNorm2d returns a channels-last view, PyTorch convs keep that memory format, so every later
  LayerNorm2d (block `norm`, stage-1 `downsample.0`) normalizes with `torch.var_mean` (unbiased). Params
  `scale`/`bias` as nn.LayerNorm. x: [..., C] -> same, in x's dtype; statistics in float32.
  """
  epsilon: float

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (channels,))
    bias = self.param("bias", nn.initializers.zeros, (channels,))
    x32 = x.astype(jnp.float32)
    mean = x32.mean(axis=-1, keepdims=True)
    var = jnp.square(x32 - mean).sum(axis=-1, keepdims=True) / (channels - 1)
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(x.dtype)


def unchanged(block: ModuleDef, static_argnums: Sequence[int] = ()) -> ModuleDef:
  """`ModuleDefs.remat` without activation checkpointing: `block` itself."""
  del static_argnums
  return block


def rematerialised(block: ModuleDef, static_argnums: Sequence[int] = ()) -> ModuleDef:
  """`block` (a Module class) rematerialised in the backward pass (`train.activation_checkpointing`).

  A rematerialised block keeps only its inputs (and variables) for the backward pass and recomputes its inner
  activations there, as `torch.utils.checkpoint` (TAO wraps every FAN block in it): less memory, one more
  forward of the block per step. Parameter paths do not change. `static_argnums` counts `self` as 0 (Python
  ints and bools such as `train` must be static).

  Not `nn.remat`: `jax.checkpoint` keeps the recomputation apart from the forward with optimization barriers,
  which XLA:CPU removes before its later CSE and scheduling passes; these then merge the recomputation into
  the forward pass, so every block's activations were kept and computed twice (measured: no memory saved,
  +26 % time; docs/benchmarks.md). `tied_checkpoint` makes the recomputation depend on the block's output
  gradient, which no compiler can move before the backward pass reaches the block.
  """
  return nn.transforms.lift_transform(_lifted_tied_checkpoint, block,
                                      static_argnums=tuple(i - 1 for i in static_argnums))


def tied_checkpoint(fun: Callable, static_argnums: Tuple[int, ...] = ()) -> Callable:
  """`fun` rematerialised: its backward pass recomputes it from its inputs tied to the output gradient.

  A `jax.custom_vjp` whose forward keeps the inputs only and whose backward runs `jax.vjp(fun)` on the
  floating-point inputs plus min(|g|, 0) of one output gradient element g (0, or NaN when g is NaN, which
  the gradient would be anyway): a data dependency that makes the recomputation wait for the gradient and
  keeps it from being merged with the forward. Arguments at `static_argnums` are Python values passed
  through unchanged. Supports reverse-mode differentiation only (as a `custom_vjp`).
  """

  def rematerialised(*args):
    static = {i: args[i] for i in static_argnums}
    dynamic = [a for i, a in enumerate(args) if i not in static]

    def call(*dynamic_args):
      rest = iter(dynamic_args)
      return fun(*[static[i] if i in static else next(rest) for i in range(len(args))])

    # Traced once, so that the forward and the recomputation are the same computation (a Flax scope draws
    # its random numbers from counters that a second trace would advance).
    jaxpr, out_shape = jax.make_jaxpr(call, return_shape=True)(*dynamic)
    run_jaxpr = jax_core.jaxpr_as_fun(jaxpr)

    def run(*dynamic_args):
      return jax.tree.unflatten(jax.tree.structure(out_shape), run_jaxpr(*jax.tree.leaves(dynamic_args)))

    def forward(*dynamic_args):
      return run(*dynamic_args), dynamic_args

    def tied_checkpoint_backward(inputs, grad):
      largest = max((g for g in jax.tree.leaves(grad) if jnp.issubdtype(g.dtype, jnp.floating)),
                    key=lambda g: g.size)
      tie = jnp.minimum(jnp.abs(largest.reshape(-1)[0].astype(jnp.float32)), 0.0)
      tied = jax.tree.map(lambda a: a + tie.astype(a.dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a,
                          inputs)
      return jax.vjp(run, *tied)[1](grad)

    custom = jax.custom_vjp(run)
    custom.defvjp(forward, tied_checkpoint_backward)
    return custom(*dynamic)

  return rematerialised


def _lifted_tied_checkpoint(fn: Callable, static_argnums: Tuple[int, ...] = ()) -> Callable:
  """`flax.core.lift.checkpoint` with `tied_checkpoint` in place of `jax.checkpoint` (all collections and
  rngs lifted; `static_argnums` counts the first argument after the scope as 0)."""

  def inner(scope_fn, repack_fn, variable_groups, rng_groups, *args):

    def scoped(variable_groups, rng_groups, *args):
      scope = scope_fn(variable_groups, rng_groups)
      return fn(scope, *args), repack_fn(scope)

    return tied_checkpoint(scoped, tuple(i + 2 for i in static_argnums))(variable_groups, rng_groups, *args)

  return flax_lift.pack(inner, (True,), (True,), (True,), name="remat")


def max_pool(x, stride: int, impl: str = conv.AUTO):
  """PyTorch MaxPool2d(stride, stride): [B, H, W, C] -> [B, H // stride, W // stride, C] (rows and columns
  past the last whole window dropped, as PyTorch).

  `impl` (`conv.IMPLS`) picks the formulation: XLA's `reduce_window` ("native": ONNX MaxPool; other platforms
  under "auto"), or on the CPU `_window_max`: XLA:CPU differentiates `reduce_window` max through a variadic
  reduce-window over four iota index maps and a scatter, 20-30x slower than the elementwise backward of
  `_window_max` (docs/benchmarks.md). Both send a window's gradient to its first maximum (row-major), as PyTorch.
  """
  native = functools.partial(_native_max_pool, stride=stride)
  return conv.per_platform(native, functools.partial(_window_max, stride=stride), impl, x)


def _native_max_pool(x, *, stride: int):
  return nn.max_pool(x, window_shape=(stride, stride), strides=(stride, stride), padding="VALID")


def _pool_windows(x, stride: int):
  """x [B, H, W, C] -> its whole windows [B, H // s, s, W // s, s, C]."""
  batch, height, width, channels = x.shape
  rows, cols = height // stride, width // stride
  return x[:, :rows * stride, :cols * stride].reshape(batch, rows, stride, cols, stride, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _window_max(x, stride: int):
  """The max pool as a reduction over the reshaped windows, with an elementwise backward (`max_pool`)."""
  return _pool_windows(x, stride).max(axis=(2, 4))


def _window_max_fwd(x, stride):
  pooled = _window_max(x, stride)
  return pooled, (x, pooled)


def _window_max_bwd(stride, residuals, grad):
  x, pooled = residuals
  windows = _pool_windows(x, stride)
  taken = jnp.zeros(pooled.shape, bool)
  rows = []
  for i in range(stride):
    row = []
    for j in range(stride):  # row-major: the first element equal to the maximum takes the gradient
      hit = (windows[:, :, i, :, j] == pooled) & ~taken
      taken = taken | hit
      row.append(jnp.where(hit, grad, jnp.zeros_like(grad)))
    rows.append(jnp.stack(row, axis=3))
  batch, rows_out, cols_out, channels = pooled.shape
  grad_x = jnp.stack(rows, axis=2).reshape(batch, rows_out * stride, cols_out * stride, channels)
  height, width = x.shape[1:3]
  return (jnp.pad(grad_x, ((0, 0), (0, height - rows_out * stride), (0, width - cols_out * stride), (0, 0))),)


_window_max.defvjp(_window_max_fwd, _window_max_bwd)


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


class DepthwiseUpsample(nn.Module):
  """TAO's up layer: ConvTranspose2d(C, C, 2f, stride=f, padding=f // 2, groups=C, bias=False)
  (`conv.depthwise_conv_transpose`).

  Output [B, f * H, f * W, C]. Param `kernel` [2f, 2f, 1, C] holds PyTorch's weight [C, 1, 2f, 2f] in
  PyTorch's orientation (kernel[i, j, 0, c] = weight[c, 0, i, j]: no spatial flip), initialised to the
  bilinear kernel and trainable.

  Attributes:
    factor: upsampling factor f (even: TAO builds 2, 4 and 8).
    dtype: compute dtype.
    conv_impl: formulation (`conv.IMPLS`); "native" exports as ONNX ConvTranspose.
  """
  factor: int
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C] -> [B, factor * H, factor * W, C]."""
    k = 2 * self.factor
    kernel = self.param("kernel", _bilinear_init, (k, k, 1, x.shape[-1])).astype(self.dtype)
    return conv.depthwise_conv_transpose(x.astype(self.dtype), kernel, self.factor, self.conv_impl)


def gelu(x):
  """Exact GELU, x * (1 + erf(x / sqrt(2))) / 2, in PyTorch's form (nn.GELU()); JAX's default is the tanh
  approximation, and its exact one goes through erfc, 1.3x slower on XLA:CPU (ConvNeXt's 64 MB MLP maps:
  22.6 ms against 17.1) for the same values within 1e-6."""
  return 0.5 * x * (1 + jax.lax.erf(x * np.asarray(1 / np.sqrt(2), x.dtype)))


class Mlp(nn.Module):
  """timm's Mlp and ConvMlp: `fc1` C -> 4C, GELU, `fc2` 4C -> C, with `linear` layers (Dense on tokens [B, N, C],
  1x1 convs on maps [B, H, W, C])."""
  dim: int
  linear: ModuleDef = Dense

  @nn.compact
  def __call__(self, x):
    x = self.linear(MLP_RATIO * self.dim, name="fc1")(x)
    return self.linear(self.dim, name="fc2")(gelu(x))


@jax.custom_vjp
def cotangent_boundary(x):
  """x unchanged; on the CPU its cotangent is computed once, before anything consumes it.

  The input of every FAN and ConvNeXt block goes through it. The residual stream's gradient is a chain of adds
  (one per block); XLA:CPU fuses that chain into each block's backward fusions instead of computing it once, so
  block k's fusions re-read every later block's contributions (fan_small's patch-embedding fusion had 149
  operands, 110-200 ms). On the CPU the cotangent goes through `conv.materialised`, which XLA cannot fuse into
  its consumers. fan_small step -7 to -11 % (docs/benchmarks.md). Other platforms get the cotangent as it is.
  """
  return x


def _cotangent_boundary_fwd(x):
  return x, None


def _cotangent_boundary_bwd(_, grad):
  return (conv.per_platform(lambda g: g, conv.materialised, conv.AUTO, grad),)


cotangent_boundary.defvjp(_cotangent_boundary_fwd, _cotangent_boundary_bwd)


def drop_path(rate: float) -> nn.Dropout:
  """timm's DropPath on tokens [B, N, C]: one keep/drop draw per sample, kept samples scaled by 1 / (1 - rate)."""
  return nn.Dropout(rate, broadcast_dims=(1, 2))


# Queries per block of `cpu_attention`: a block's [B, h, 128, N] logits stay in the cache at FAN's N = 1024.
ATTENTION_QUERY_BLOCK = 128


def cpu_attention(q, k, v, query_block: int = ATTENTION_QUERY_BLOCK):
  """`jax.nn.dot_product_attention` (softmax over the keys) in the form fastest on XLA:CPU: q [B, Nq, h, d],
  k and v [B, Nk, h, d] -> [B, Nq, h, d].

  Blocks of `query_block` queries one after the other, as flash attention does (the softmax of a query
  needs its own row of logits only): per block exp(q k^T / sqrt(d) - max) v, divided by the exponentials'
  sum afterwards, heads leading so that each head's product is one plain matrix product. A block's
  [B, h, query_block, Nk] weights stay in the cache where all of them (32 MiB per image at FAN's 1024
  tokens) would not. Its own backward keeps q, k, v, the output and each query's log-sum-exp, not the
  weights, and recomputes each block's weights from them (`_cpu_attention_bwd`). 1.7x faster forward and
  1.2x faster forward + backward than the unblocked form on XLA:CPU at FAN's 1024 tokens
  (docs/benchmarks.md). Other platforms keep XLA's own (`dot_product_attention`).
  """
  return _cpu_attention(q, k, v, query_block)


def _head_major(t):
  return jnp.moveaxis(t, 2, 1)  # [B, N, h, d] -> [B, h, N, d]


def _attention_logits(q_block, k, scale):
  """[B, h, c, d] x [B, h, Nk, d] -> [B, h, c, Nk] logits in float32."""
  return jnp.einsum("bhqd,bhkd->bhqk", q_block * scale, k, preferred_element_type=jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _cpu_attention(q, k, v, query_block):
  return _cpu_attention_fwd(q, k, v, query_block)[0]


def _cpu_attention_fwd(q, k, v, query_block):
  scale = jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
  qh, kh, vh = _head_major(q), _head_major(k), _head_major(v)
  outs, log_sums = [], []
  for start in range(0, q.shape[1], query_block):
    logits = _attention_logits(qh[:, :, start:start + query_block], kh, scale)
    peak = logits.max(axis=-1, keepdims=True)
    weights = jnp.exp(logits - peak)
    total = weights.sum(axis=-1, keepdims=True)
    out = jnp.einsum("bhqk,bhkd->bhqd", weights.astype(v.dtype), vh, preferred_element_type=jnp.float32)
    outs.append((out / total).astype(v.dtype))
    log_sums.append(peak + jnp.log(total))
  out = jnp.concatenate(outs, axis=2)  # [B, h, Nq, d]
  return jnp.moveaxis(out, 1, 2), (qh, kh, vh, out, jnp.concatenate(log_sums, axis=2))


def _cpu_attention_bwd(query_block, residuals, grad):
  """Flash attention's backward per query block: weights p = exp(logits - log-sum-exp), dv += p^T g,
  dlogits = p * (g v^T - rowsum(g * out)), dq = dlogits k / sqrt(d), dk += dlogits^T q / sqrt(d)."""
  qh, kh, vh, out, log_sum = residuals
  scale = qh.shape[-1] ** -0.5
  gh = _head_major(grad).astype(jnp.float32)
  grad_dot_out = (gh * out.astype(jnp.float32)).sum(axis=-1, keepdims=True)  # [B, h, Nq, 1]
  grad_q, grad_k, grad_v = [], 0.0, 0.0
  for start in range(0, qh.shape[2], query_block):
    rows = slice(start, start + query_block)
    weights = jnp.exp(_attention_logits(qh[:, :, rows], kh, jnp.asarray(scale, qh.dtype)) - log_sum[:, :, rows])
    grad_v = grad_v + jnp.einsum("bhqk,bhqd->bhkd", weights, gh[:, :, rows])
    grad_weights = jnp.einsum("bhqd,bhkd->bhqk", gh[:, :, rows], vh, preferred_element_type=jnp.float32)
    grad_logits = weights * (grad_weights - grad_dot_out[:, :, rows]) * scale
    grad_q.append(jnp.einsum("bhqk,bhkd->bhqd", grad_logits, kh, preferred_element_type=jnp.float32))
    grad_k = grad_k + jnp.einsum("bhqk,bhqd->bhkd", grad_logits, qh[:, :, rows], preferred_element_type=jnp.float32)
  grads = jnp.concatenate(grad_q, axis=2), grad_k, grad_v
  return tuple(jnp.moveaxis(g, 1, 2).astype(t.dtype) for g, t in zip(grads, (qh, kh, vh)))


_cpu_attention.defvjp(_cpu_attention_fwd, _cpu_attention_bwd)


def dot_product_attention(q, k, v):
  """`jax.nn.dot_product_attention(q, k, v)`: softmax(q k^T / sqrt(d)) v per head, no mask; q [B, Nq, h, d],
  k and v [B, Nk, h, d] -> [B, Nq, h, d] -- in float16 as two einsums with float32 logits and softmax.

  For float16 inputs JAX's own asks XLA for the `F16_F16_F32` dot algorithm, which XLA:CPU ("not supported by
  dot_general on CPU") and XLA:GPU on an H200 ("Unsupported dot precision algorithm: 4") refuse when
  compiling, past the fallback JAX has for it (JAX 0.10.2 and 0.11.2). The einsums compute what it does
  (float32 accumulation, weights cast to v's dtype) with the default algorithm.
  """
  if q.dtype != jnp.float16:
    return jax.nn.dot_product_attention(q, k, v)
  scale = q.shape[-1] ** -0.5
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32) * scale
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v, preferred_element_type=jnp.float32).astype(v.dtype)


def attention(impl: str = conv.AUTO) -> Callable:
  """Multi-head attention q [B, Nq, h, d], k, v [B, Nk, h, d] -> [B, Nq, h, d] in the formulation `impl` says
  (`conv.IMPLS`): `cpu_attention` on the CPU, `dot_product_attention` elsewhere and for "native"."""
  return functools.partial(conv.per_platform, dot_product_attention, cpu_attention, impl)


@dataclasses.dataclass(frozen=True)
class ModuleDefs:
  """The layer constructors of one network, built once by the top-level model (`module_defs`) and handed to every
  module, which builds its layers from them (flax's ResNet takes its `conv` and `norm` the same way).

  The defaults are float32 layers with the "auto" formulation and no rematerialisation.

  Attributes:
    conv: `Conv2d` (dense and depthwise) with the compute dtype and the convolutions' formulation.
    upsample: `DepthwiseUpsample`, likewise.
    dense: `Dense` with the compute dtype.
    batch_norm: `BatchNorm`, layer_norm: `LayerNorm`, group_norm: `GroupNorm`, with the compute dtype.
    attention: the attention function (`attention`) of the formulation.
    max_pool: `max_pool` of the formulation.
    remat: `rematerialised` or `unchanged`; a module applies it to the Module class of its repeated blocks.
  """
  conv: ModuleDef = Conv2d
  upsample: ModuleDef = DepthwiseUpsample
  dense: ModuleDef = Dense
  batch_norm: ModuleDef = BatchNorm
  layer_norm: ModuleDef = LayerNorm
  group_norm: ModuleDef = GroupNorm
  attention: Callable = attention()
  max_pool: Callable = max_pool
  remat: Callable[..., ModuleDef] = unchanged


def module_defs(dtype: Any = jnp.float32, conv_impl: str = conv.AUTO, remat: bool = False) -> ModuleDefs:
  """The `ModuleDefs` of a network: compute `dtype` (parameters stay float32), convolutions, attention and max
  pooling in the formulation `conv_impl` (`conv.IMPLS`; "native" exports as ONNX Conv / ConvTranspose /
  MaxPool), repeated blocks rematerialised with `remat` (`train.activation_checkpointing`)."""
  formulated = dict(dtype=dtype, conv_impl=conv_impl)
  return ModuleDefs(conv=functools.partial(Conv2d, **formulated),
                    upsample=functools.partial(DepthwiseUpsample, **formulated),
                    dense=functools.partial(Dense, dtype=dtype),
                    batch_norm=functools.partial(BatchNorm, dtype=dtype),
                    layer_norm=functools.partial(LayerNorm, dtype=dtype),
                    group_norm=functools.partial(GroupNorm, dtype=dtype),
                    attention=attention(conv_impl),
                    max_pool=functools.partial(max_pool, impl=conv_impl),
                    remat=rematerialised if remat else unchanged)
