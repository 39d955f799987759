"""Layers shared by the CenterPose network parts, with PyTorch's semantics and initialisation.

Everything is NHWC with HWIO kernels. Parameter names are the ones the checkpoint converter
(`centerpose_jax.convert.pytorch`) maps from TAO's state_dict: `kernel` <- `weight`, `bias` <- `bias`,
norm `scale` <- `weight`, batch_stats `mean`/`var` <- `running_mean`/`running_var`. Parameters are float32;
`dtype` is the compute dtype.
"""

import math
from typing import Any, Callable, Optional, Tuple, Type

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


def torch_conv_bias_init(fan_in: int) -> Callable:
  """PyTorch's default Conv2d bias init: U(+-1 / sqrt(fan_in)), fan_in = k * k * C_in / groups."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class Conv2d(nn.Module):
  """PyTorch Conv2d (groups=1) with symmetric zero padding given in pixels (`conv.conv2d`).

  Params: `kernel` [k, k, C_in, features] (HWIO), `bias` [features] when `use_bias`.

  Attributes:
    features: output channels.
    kernel_size: k (square kernel).
    stride: s.
    padding: p pixels on every side, as PyTorch's `padding` (never 'SAME': for stride 2 and even sizes
      XLA's 'SAME' pads only at the end, PyTorch pads both sides).
    use_bias: whether the conv has a bias.
    kernel_init: kernel initializer (default: PyTorch's).
    bias_init: bias initializer; None gives PyTorch's default U(+-1 / sqrt(k * k * C_in)).
    dtype: compute dtype.
    conv_impl: formulation (`conv.IMPLS`): "auto" picks per platform, "native" is XLA's convolution.
  """
  features: int
  kernel_size: int
  stride: int = 1
  padding: int = 0
  use_bias: bool = True
  kernel_init: Callable = TORCH_CONV_INIT
  bias_init: Optional[Callable] = None
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C_in] -> [B, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1, features]."""
    k = self.kernel_size
    in_features = x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, in_features, self.features))
    y = conv.conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.padding, self.conv_impl)
    if self.use_bias:
      bias_init = self.bias_init or torch_conv_bias_init(k * k * in_features)
      y = y + self.param("bias", bias_init, (self.features,)).astype(self.dtype)
    return y


class DepthwiseConv2d(nn.Module):
  """PyTorch depthwise Conv2d (groups = C) with a bias, stride 1, padding k // 2 (`conv.depthwise_conv2d`).

  Params: `kernel` [k, k, 1, C] (from PyTorch's [C, 1, k, k]), `bias` [C].

  Attributes:
    kernel_size: k (odd).
    kernel_init: kernel initializer.
    dtype: compute dtype.
    conv_impl: formulation (`conv.IMPLS`).
  """
  kernel_size: int
  kernel_init: Callable = TORCH_CONV_INIT
  dtype: Any = jnp.float32
  conv_impl: str = conv.AUTO

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C] -> [B, H, W, C]."""
    k, channels = self.kernel_size, x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (k, k, 1, channels)).astype(self.dtype)
    bias = self.param("bias", nn.initializers.zeros, (channels,)).astype(self.dtype)
    return conv.depthwise_conv2d(x.astype(self.dtype), kernel, self.conv_impl) + bias


def batch_norm(train: bool, dtype: Any, name: str) -> nn.BatchNorm:
  """BatchNorm2d as TAO's (eps 1e-5, PyTorch momentum 0.1): batch statistics when training, else running ones.

  Under `jax.jit` with the batch sharded over a mesh the batch statistics are global (no axis_name needed).
  """
  return nn.BatchNorm(use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, epsilon=NORM_EPSILON,
                      use_fast_variance=False, dtype=dtype, name=name)


def checkpointed(block: Type[nn.Module], enabled: bool, static_argnums: Tuple[int, ...] = ()) -> Type[nn.Module]:
  """`block`, or with `enabled` its rematerialised version (`train.activation_checkpointing`).

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
  if not enabled:
    return block
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
  """Exact (erf) GELU, as PyTorch's nn.GELU(); JAX's default is the tanh approximation."""
  return jax.nn.gelu(x, approximate=False)


def layer_norm(epsilon: float, dtype: Any, name: str) -> nn.LayerNorm:
  """LayerNorm over the last axis with an explicit epsilon and two-pass variance (as PyTorch)."""
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, use_fast_variance=False, name=name)


def dense(features: int, dtype: Any, name: str) -> nn.Dense:
  """Linear layer with TAO's init (normal std 0.02, zero bias); kernel [in, out]."""
  return nn.Dense(features, dtype=dtype, kernel_init=TAO_NORMAL_INIT, name=name)
