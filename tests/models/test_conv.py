"""The convolution formulations (models/conv.py): the CPU ones equal XLA's, and the choice follows the platform."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from centerpose_jax.models import conv

# (input [B, H, W, C], kernel k, features, stride, padding). The thresholds of the Winograd parts the case's
# name says are lowered to 1 (the real ones need maps too large for a quick test), the others raised out of
# reach (`_winograd_thresholds`).
CONV_CASES = {
    "winograd": ((2, 13, 10, 32), 3, 40, 1, 1),  # sizes that are not multiples of the 4x4 tiles
    "winograd_valid": ((1, 9, 7, 16), 3, 24, 1, 0),
    "winograd_forward": ((2, 13, 10, 32), 3, 40, 1, 1),  # XLA's gradients
    "winograd_grad": ((2, 13, 10, 32), 3, 40, 1, 1),  # XLA's forward
    "winograd_grad_valid": ((1, 9, 7, 16), 3, 24, 1, 0),
    "patch_1x1": ((2, 5, 6, 24), 1, 48, 1, 0),
    "patch_2x2": ((2, 9, 8, 16), 2, 64, 2, 0),  # odd height: PyTorch drops the last row
    "native_stride2": ((2, 12, 11, 64), 3, 32, 2, 1),
    "phase_stride2": ((2, 13, 10, 8), 3, 24, 2, 1),  # few input channels: the input gradient by phases
    "phase_stride2_5x5": ((1, 11, 12, 4), 5, 6, 2, 2),
    "phase_stride3_valid": ((1, 14, 13, 3), 5, 4, 3, 0),
    "native_7x7": ((1, 16, 16, 3), 7, 16, 1, 3),
    "kernel_grad_by_patches_3x3": ((2, 6, 5, 16), 3, 24, 1, 1),  # stride 1, no Winograd: XLA's, patches dW
}


def _conv_and_grads(impl, x, kernel, cotangent, stride, padding):
  def loss(inputs, weights):
    return jnp.vdot(conv.conv2d(inputs, weights, stride, padding, impl), cotangent)
  return jax.jit(lambda a, b: (conv.conv2d(a, b, stride, padding, impl), jax.grad(loss, argnums=(0, 1))(a, b)))(
      x, kernel)


def _winograd_thresholds(monkeypatch, forward: bool, backward: bool):
  for name in ("WINOGRAD_FORWARD_MIN_IN_CHANNELS", "WINOGRAD_FORWARD_MIN_OUT_CHANNELS",
               "WINOGRAD_FORWARD_MIN_POSITIONS"):
    monkeypatch.setattr(conv, name, 1 if forward else 1 << 40)
  for name in ("WINOGRAD_GRAD_MIN_CHANNELS", "WINOGRAD_GRAD_MIN_POSITIONS"):
    monkeypatch.setattr(conv, name, 1 if backward else 1 << 40)


@pytest.mark.parametrize("case", CONV_CASES)
def test_cpu_conv_equals_xla_conv_and_its_gradients(case, monkeypatch):
  shape, k, features, stride, padding = CONV_CASES[case]
  by_patches = case.startswith("kernel_grad_by_patches")
  _winograd_thresholds(monkeypatch, forward=not (case.startswith("winograd_grad") or by_patches),
                       backward=not (case.startswith("winograd_forward") or by_patches))
  for name in ("PATCHES_GRAD_MIN_CHANNELS", "PATCHES_GRAD_MIN_POSITIONS"):
    monkeypatch.setattr(conv, name, 1 if by_patches else 1 << 40)
  rng = np.random.default_rng(0)
  x = rng.standard_normal(shape).astype(np.float32)
  kernel = (rng.standard_normal((k, k, shape[-1], features)) / np.sqrt(k * k * shape[-1])).astype(np.float32)
  out_h, out_w = ((size + 2 * padding - k) // stride + 1 for size in shape[1:3])
  cotangent = rng.standard_normal((shape[0], out_h, out_w, features)).astype(np.float32)
  expected, (expected_dx, expected_dw) = _conv_and_grads(conv.NATIVE, x, kernel, cotangent, stride, padding)
  out, (dx, dw) = _conv_and_grads(conv.CPU, x, kernel, cotangent, stride, padding)
  assert out.shape == expected.shape == (shape[0], out_h, out_w, features)
  # Winograd F(4x4, 3x3) rounds differently: about 1e-6 of the largest magnitude.
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * float(np.abs(expected).max()))
  np.testing.assert_allclose(dx, expected_dx, rtol=0, atol=1e-5 * float(np.abs(expected_dx).max()))
  np.testing.assert_allclose(dw, expected_dw, rtol=0, atol=1e-5 * float(np.abs(expected_dw).max()))
  # Matrix products: none (XLA's conv), the strided convs' weight gradient over the input patches, the
  # forward's and the weight gradient's (patch convs), or those of the Winograd forward or backward (transforms
  # and per-position products).
  grad_jaxpr = jax.make_jaxpr(jax.grad(lambda w: jnp.sum(conv.conv2d(x, w, stride, padding, conv.CPU))))(kernel)
  dots = str(grad_jaxpr).count("dot_general")
  strided = stride > 1 and k > stride
  assert dots == (1 if strided or by_patches else 0) if case.startswith(("native", "phase", "kernel_grad")) else (
      dots == 2 if case.startswith("patch") else dots > 2), dots
  # The strided convs' input gradient: XLA's input-dilated convolution, or the phases' stride-1 one.
  input_grad_jaxpr = str(jax.make_jaxpr(jax.grad(lambda a: jnp.sum(conv.conv2d(a, kernel, stride, padding,
                                                                                conv.CPU))))(x))
  if stride > 1 and k > stride:
    assert (f"lhs_dilation=({stride}, {stride})" in input_grad_jaxpr) == case.startswith("native"), case


def test_winograd_forward_output_is_materialised_under_differentiation_only(monkeypatch):
  """In a VJP the Winograd forward's output is computed once (`conv.materialised`: a conditional XLA:CPU keeps);
  the inference forward has no conditional, and both give the same values."""
  _winograd_thresholds(monkeypatch, forward=True, backward=False)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((1, 12, 12, 4)).astype(np.float32)
  kernel = rng.standard_normal((3, 3, 4, 8)).astype(np.float32)
  forward = jax.jit(lambda a, b: conv.conv2d(a, b, 1, 1, conv.CPU))
  with_vjp = jax.jit(lambda a, b: jax.vjp(lambda w: conv.conv2d(a, w, 1, 1, conv.CPU), b)[0])
  assert "conditional(" not in forward.lower(x, kernel).compile().as_text()
  assert "conditional(" in with_vjp.lower(x, kernel).compile().as_text()
  np.testing.assert_array_equal(with_vjp(x, kernel), forward(x, kernel))


@pytest.mark.parametrize("shape,k", [((2, 6, 10, 5), 7), ((1, 9, 5, 3), 3)])
def test_depthwise_conv_formulations_agree_with_pytorch_cross_correlation(shape, k):
  rng = np.random.default_rng(1)
  x = rng.standard_normal(shape).astype(np.float32)
  kernel = rng.standard_normal((k, k, 1, shape[-1])).astype(np.float32)
  cotangent = rng.standard_normal(x.shape).astype(np.float32)
  results = {}
  for impl in (conv.CPU, conv.NATIVE):
    loss = lambda a, b, impl=impl: jnp.vdot(conv.depthwise_conv2d(a, b, impl), cotangent)
    results[impl] = jax.jit(lambda a, b, impl=impl, loss=loss: (
        conv.depthwise_conv2d(a, b, impl), jax.grad(loss, argnums=(0, 1))(a, b)))(x, kernel)
  (shifted, shifted_grads), (grouped, grouped_grads) = results[conv.CPU], results[conv.NATIVE]
  np.testing.assert_allclose(shifted, grouped, atol=1e-5)
  for a, b in zip(shifted_grads, grouped_grads):
    np.testing.assert_allclose(a, b, atol=1e-4)
  # PyTorch cross-correlation: out[b, y, x, c] = sum_ij in[b, y + i - k // 2, x + j - k // 2, c] kernel[i, j, c].
  pad = k // 2
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  direct = np.einsum("ijc,ijc->c", padded[-1, 2:2 + k, 4:4 + k], kernel[:, :, 0])
  np.testing.assert_allclose(shifted[-1, 2, 4], direct, atol=1e-5)
  # the kernel gradient directly: sum over b, y, x of padded[b, y + i, x + j] * cotangent[b, y, x]
  expected = np.stack([np.einsum("byxc,byxc->c", padded[:, i:i + shape[1], j:j + shape[2]], cotangent)
                       for i in range(k) for j in range(k)]).reshape(k, k, 1, shape[-1])
  np.testing.assert_allclose(shifted_grads[1], expected, atol=1e-4)


def _lowered_ops(platform: str) -> dict:
  """Op counts of the gradient of a conv net's loss lowered for `platform` (without that platform's device)."""
  def loss(x, kernels):
    y = conv.conv2d(x, kernels[0], 1, 1)  # on the CPU: XLA's forward, Winograd gradients
    y = conv.conv2d(y, kernels[1], 2, 1)  # on the CPU: XLA's forward and input gradient, patches kernel gradient
    y = conv.depthwise_conv2d(y, kernels[2])
    return jnp.sum(conv.depthwise_conv_transpose(y, kernels[3], 2))

  x = jax.ShapeDtypeStruct((2, 128, 128, 128), jnp.float32)  # shapes only: nothing runs
  kernels = [jax.ShapeDtypeStruct(shape, jnp.float32)
             for shape in ((3, 3, 128, 48), (3, 3, 48, 128), (3, 3, 1, 128), (4, 4, 1, 128))]
  text = export.export(jax.jit(jax.grad(loss, argnums=(0, 1))), platforms=[platform])(x, kernels).mlir_module()
  return {"convolution": text.count("stablehlo.convolution"), "dot_general": text.count("stablehlo.dot_general"),
          "reduce_precision": text.count("stablehlo.reduce_precision")}


def test_cpu_formulations_are_chosen_only_when_lowering_for_the_cpu():
  """"auto" follows the platform the computation is lowered for, not the process's backend: lowered for CUDA
  or TPU on this CPU-only machine, every conv and every gradient stays an XLA convolution (cuDNN's kernels)."""
  for platform in ("cuda", "rocm", "tpu"):
    ops = _lowered_ops(platform)
    assert ops["dot_general"] == 0 and ops["reduce_precision"] == 0, (platform, ops)
    # at least the forward and the weight gradient of each of the four (input gradients add more)
    assert ops["convolution"] >= 8, (platform, ops)
  cpu = _lowered_ops("cpu")
  # XLA convolutions: both forwards and the stride-2 conv's input gradient; the first conv's gradients and the
  # stride-2 conv's kernel gradient are matrix products; the depthwise ones are shifted multiply-adds.
  assert cpu["convolution"] == 3 and cpu["dot_general"] > 2 and cpu["reduce_precision"] >= 1, cpu


def test_depthwise_sum_stays_out_of_the_matrix_product_fusion_on_the_cpu():
  """ConvNeXt's depthwise conv -> normalisation -> 1x1 conv compiled by XLA:CPU: the depthwise sum ends in a
  reduce-precision that survives optimisation, so the sum is not handed to the matrix product's YNNPACK
  fusion (whose inputs would then be the shifted copies); the reduce-precision changes no value."""
  rng = np.random.default_rng(2)
  x = rng.standard_normal((1, 16, 16, 32)).astype(np.float32)
  kernel = rng.standard_normal((7, 7, 1, 32)).astype(np.float32)
  weights = rng.standard_normal((1, 1, 32, 64)).astype(np.float32)

  def block(impl):
    def fn(a, b, w):
      y = conv.depthwise_conv2d(a, b, impl)
      y = (y - y.mean(axis=-1, keepdims=True)) * jax.lax.rsqrt(y.var(axis=-1, keepdims=True) + 1e-6)
      return conv.conv2d(y, w, 1, 0, impl)
    return jax.jit(fn)

  compiled = block(conv.CPU).lower(x, kernel, weights).compile().as_text()
  assert "reduce-precision(" in compiled
  np.testing.assert_allclose(block(conv.CPU)(x, kernel, weights), block(conv.NATIVE)(x, kernel, weights),
                             atol=1e-4)
