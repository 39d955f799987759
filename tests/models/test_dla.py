"""Tests for the DLA34 backbone, the neck and the shared layers (models/dla.py, neck.py, layers.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from centerpose_jax.models import conv
from centerpose_jax.models import dla
from centerpose_jax.models import layers
from centerpose_jax.models import neck

# networks.md section 4: DLA34 `base.*` parameters in TAO, of which 41,728 are the dead level3/4.project.
TAO_DLA34_BACKBONE_PARAMS = 15_270_832
DEAD_PROJECT_PARAMS = 41_728


def _torch_depthwise_conv_transpose(x, weight, stride, padding):
  """PyTorch ConvTranspose2d(groups=C, bias=False) by its definition: input (i, j) adds x * w[t, u] at
  output (i * stride + t - padding, j * stride + u - padding). x: [B, H, W, C], weight: [C, 1, k, k]."""
  batch, height, width, channels = x.shape
  k = weight.shape[-1]
  full = np.zeros((batch, (height - 1) * stride + k, (width - 1) * stride + k, channels))
  for t in range(k):
    for u in range(k):
      full[:, t:t + (height - 1) * stride + 1:stride, u:u + (width - 1) * stride + 1:stride] += (
          x * weight[:, 0, t, u])
  out_h, out_w = (height - 1) * stride - 2 * padding + k, (width - 1) * stride - 2 * padding + k
  return full[:, padding:padding + out_h, padding:padding + out_w]


def test_bilinear_kernel_matches_tao_fill_up_weights():
  """The kernel is the outer product of the 1-D profiles networks.md lists, copied to every channel."""
  profiles = {
      4: [0.25, 0.75, 0.75, 0.25],
      8: [0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125],
      16: np.concatenate([np.arange(1, 16, 2), np.arange(15, 0, -2)]) / 16,
  }
  for k, profile in profiles.items():
    kernel = layers.bilinear_upsample_kernel(k, 3)
    assert kernel.shape == (k, k, 1, 3)
    for channel in range(3):
      np.testing.assert_allclose(kernel[:, :, 0, channel], np.outer(profile, profile), rtol=1e-6)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_depthwise_upsample_formulations_equal_pytorch_conv_transpose(factor):
  """Both formulations (CPU phases, XLA's grouped input-dilated conv) compute PyTorch's ConvTranspose2d(2f, f,
  f // 2, groups=C) with a non-symmetric kernel stored unflipped, and have the same gradients."""
  rng = np.random.default_rng(factor)
  x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
  k = 2 * factor
  kernel = rng.standard_normal((k, k, 1, 4)).astype(np.float32)
  variables = {"params": {"kernel": kernel}}
  torch_weight = kernel.transpose(3, 2, 0, 1)  # the converter's OIHW <-> HWIO rule
  expected = _torch_depthwise_conv_transpose(x, torch_weight, factor, factor // 2)
  assert expected.shape == (2, 3 * factor, 5 * factor, 4)

  cotangent = rng.standard_normal(expected.shape).astype(np.float32)
  results = {}
  for impl in (conv.CPU, conv.NATIVE):
    layer = layers.DepthwiseUpsample(factor, conv_impl=impl)
    loss = lambda v, inputs, layer=layer: jnp.sum(layer.apply(v, inputs) * cotangent)
    out, grads = jax.jit(lambda v, inputs, layer=layer, loss=loss: (
        layer.apply(v, inputs), jax.grad(loss, argnums=(0, 1))(v, inputs)))(variables, x)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    results[impl] = grads
  np.testing.assert_allclose(results[conv.CPU][0]["params"]["kernel"], results[conv.NATIVE][0]["params"]["kernel"],
                             atol=1e-4)
  np.testing.assert_allclose(results[conv.CPU][1], results[conv.NATIVE][1], atol=1e-4)


@pytest.mark.parametrize("stride", [2, 4])
def test_max_pool_cpu_formulation_equals_xla_values_and_gradients_with_ties(stride):
  # ReLU'd integers: many windows hold ties (all zeros or repeated values); sizes leave a partial window.
  rng = np.random.default_rng(stride)
  x = np.maximum(rng.integers(-3, 3, (2, 2 * stride + 1, 3 * stride + 1, 5)), 0).astype(np.float32)
  cotangent = rng.standard_normal((2, 2, 3, 5)).astype(np.float32)
  results = {}
  for impl in (conv.CPU, conv.NATIVE):
    def pooled_and_grad(inputs, impl=impl):
      pooled, vjp = jax.vjp(lambda a: layers.max_pool(a, stride, impl), inputs)
      return pooled, vjp(cotangent)[0]
    results[impl] = jax.jit(pooled_and_grad)(x)
  np.testing.assert_array_equal(results[conv.CPU][0], results[conv.NATIVE][0])
  np.testing.assert_array_equal(results[conv.CPU][1], results[conv.NATIVE][1])
  # A window of equal values sends its whole gradient to its first (row-major) element, as PyTorch.
  grad = jax.grad(lambda inputs: jnp.sum(layers.max_pool(inputs, stride, conv.CPU)))(jnp.ones((1, stride, stride, 1)))
  assert grad[0, 0, 0, 0] == 1 and float(grad.sum()) == 1
  assert "reduce_window" not in str(jax.make_jaxpr(lambda a: layers.max_pool(a, stride, conv.CPU))(x))


def test_depthwise_upsample_initialises_to_bilinear_interpolation():
  layer = layers.DepthwiseUpsample(2)
  x = jnp.zeros((1, 4, 4, 3))
  kernel = layer.init(jax.random.PRNGKey(0), x)["params"]["kernel"]
  np.testing.assert_array_equal(kernel, layers.bilinear_upsample_kernel(4, 3))
  # Interior pixels of a linear ramp stay on the (upsampled) ramp.
  ramp = jnp.broadcast_to(jnp.arange(6.0)[None, None, :, None], (1, 6, 6, 1))
  out = layer.apply({"params": {"kernel": kernel[..., :1]}}, ramp)
  np.testing.assert_allclose(out[0, 5, 2:10, 0], (np.arange(2, 10) - 0.5) / 2, atol=1e-6)


def test_dla34_level_shapes_root_widths_and_param_count_on_non_square_input():
  model = dla.DLA34(name="base")
  x = jnp.zeros((2, 96, 160, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  outputs = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  expected = [(2, 96 // 2**i, 160 // 2**i, c) for i, c in enumerate(dla.DLA34_CHANNELS)]
  assert [o.shape for o in outputs] == expected
  params = variables["params"]
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))
  assert count == TAO_DLA34_BACKBONE_PARAMS - DEAD_PROJECT_PARAMS
  # Root input widths set by the concatenation [x2, x1, pooled input, outer x1] (networks.md 1.2).
  root_inputs = {
      "level2": params["level2"]["root"],
      "level3": params["level3"]["tree2"]["root"],
      "level4": params["level4"]["tree2"]["root"],
      "level5": params["level5"]["root"],
  }
  assert {name: root["conv"]["kernel"].shape[2] for name, root in root_inputs.items()} == {
      "level2": 128, "level3": 448, "level4": 896, "level5": 1280}
  assert "project" not in params["level3"] and "project" in params["level3"]["tree1"]


def test_width_multiplier_scales_the_backbone():
  assert dla.dla34_channels(0.25) == (4, 8, 16, 32, 64, 128)
  model = dla.DLA34(dla.dla34_channels(0.25))
  x = jnp.zeros((1, 64, 64, 3))
  outputs = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), x, train=False)[0])
  assert [o.shape[-1] for o in outputs] == [4, 8, 16, 32, 64, 128]
  with pytest.raises(ValueError, match="positive"):
    dla.dla34_channels(0.0)


def test_dla_up_stages_follow_tao_constructor():
  assert neck.dla_up_stages([64, 128, 256, 512], [1, 2, 4, 8]) == [
      (256, (1, 2)), (128, (1, 2, 2)), (64, (1, 2, 2, 2))]
