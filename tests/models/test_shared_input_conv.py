"""Convs that read one map run as one convolution (layers.shared_input_conv, heads.apply_heads, the ConvGRU):
the same parameters and the same outputs and gradients as each layer on its own."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from centerpose_jax.models import conv
from centerpose_jax.models import heads
from centerpose_jax.models import layers


class _Convs(nn.Module):
  """Three 3x3 convs on one input, with and without bias, run as one (`shared`) or each alone."""
  shared: bool
  impl: str = conv.CPU

  @nn.compact
  def __call__(self, x):
    convs = [layers.Conv2d(features, 3, padding=1, use_bias=use_bias, conv_impl=self.impl, name=name)
             for name, features, use_bias in (("a", 24, True), ("b", 16, False), ("c", 8, True))]
    return layers.shared_input_conv(convs, x) if self.shared else [layer(x) for layer in convs]


def _outputs_and_grads(model, variables, x):
  def loss(v, inputs):
    return sum(jnp.sum(jnp.sin(out)) for out in model.apply(v, inputs))
  return jax.jit(lambda v, inputs: (model.apply(v, inputs), jax.grad(loss, argnums=(0, 1))(v, inputs)))(
      variables, x)


@pytest.mark.parametrize("impl", [conv.CPU, conv.NATIVE])
def test_shared_input_conv_equals_each_conv_alone(impl, monkeypatch):
  # Winograd thresholds lowered to 1 (the real ones need large maps): on the CPU the merged conv takes the
  # Winograd forward, so the three run as one (one Winograd conv in the graph instead of three).
  for name in ("WINOGRAD_FORWARD_MIN_IN_CHANNELS", "WINOGRAD_FORWARD_MIN_OUT_CHANNELS",
               "WINOGRAD_FORWARD_MIN_POSITIONS", "WINOGRAD_GRAD_MIN_CHANNELS", "WINOGRAD_GRAD_MIN_POSITIONS"):
    monkeypatch.setattr(conv, name, 1)
  x = np.random.default_rng(0).standard_normal((2, 9, 11, 12)).astype(np.float32)
  variables = _Convs(shared=False, impl=impl).init(jax.random.key(0), x)
  assert jax.tree.map(np.shape, _Convs(shared=True, impl=impl).init(jax.random.key(0), x)) == jax.tree.map(
      np.shape, variables)
  assert "bias" not in variables["params"]["b"]
  graphs = {shared: str(jax.make_jaxpr(lambda v, inputs, shared=shared: _Convs(shared=shared, impl=impl).apply(
      v, inputs))(variables, x)) for shared in (True, False)}
  if impl == conv.CPU:
    assert (graphs[True].count("custom_vjp_call"), graphs[False].count("custom_vjp_call")) == (1, 3)
  else:
    assert graphs[True].count("conv_general_dilated") == graphs[False].count("conv_general_dilated") == 3
  shared, shared_grads = _outputs_and_grads(_Convs(shared=True, impl=impl), variables, x)
  alone, alone_grads = _outputs_and_grads(_Convs(shared=False, impl=impl), variables, x)
  assert [out.shape for out in shared] == [(2, 9, 11, 24), (2, 9, 11, 16), (2, 9, 11, 8)]
  for a, b in zip(jax.tree.leaves((shared, shared_grads)), jax.tree.leaves((alone, alone_grads))):
    # Winograd (merged) against XLA's forward (alone, below the real thresholds): ~1e-6 of the magnitude
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * float(np.abs(b).max()))


def test_shared_input_conv_rejects_mismatched_convs():
  x = jnp.zeros((1, 4, 4, 3))
  convs = [layers.Conv2d(4, 3, padding=1), layers.Conv2d(4, 1)]
  with pytest.raises(ValueError, match="one kernel size"):
    nn.apply(lambda module, inputs: layers.shared_input_conv(convs, inputs), _Convs(shared=True))({}, x)


class _Heads(nn.Module):
  """Three heads, two on one map and one on another, through `apply_heads` or each called alone."""
  shared: bool
  use_group_norm: bool

  @nn.compact
  def __call__(self, x, y):
    modules = {name: heads.Head(classes, 32, use_group_norm=self.use_group_norm,
                                     heatmap=heads.is_heatmap(name), name=name)
               for name, classes in (("hm", 1), ("wh", 2), ("scale", 3))}
    if self.shared:
      return heads.apply_heads(modules, [(x, ["hm", "wh"]), (y, ["scale"])])
    return {"hm": modules["hm"](x), "wh": modules["wh"](x), "scale": modules["scale"](y)}


@pytest.mark.parametrize("use_group_norm", [True, False])
def test_apply_heads_equals_each_head_alone(use_group_norm):
  """apply_heads hands each head its first conv's bias apart (folded into the GroupNorm, else added)."""
  rng = np.random.default_rng(1)
  x, y = (rng.standard_normal((1, 8, 8, 16)).astype(np.float32) for _ in range(2))
  variables = _Heads(shared=False, use_group_norm=use_group_norm).init(jax.random.key(0), x, y)
  variables = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape).astype(np.float32)), variables)
  assert jax.tree.map(np.shape, _Heads(shared=True, use_group_norm=use_group_norm).init(
      jax.random.key(0), x, y)) == jax.tree.map(np.shape, variables)
  assert set(variables["params"]["hm"]) == ({"0", "1", "3"} if use_group_norm else {"0", "2"})
  shared = _Heads(shared=True, use_group_norm=use_group_norm).apply(variables, x, y)
  alone = _Heads(shared=False, use_group_norm=use_group_norm).apply(variables, x, y)
  assert list(shared) == ["hm", "wh", "scale"]
  for name in alone:
    np.testing.assert_allclose(shared[name], alone[name], rtol=1e-5, atol=1e-5, err_msg=name)
