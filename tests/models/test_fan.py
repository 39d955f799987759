"""Tests for the FAN hybrid backbones (centerpose_jax/models/fan.py).

Parity: TAO's CenterPose with each FAN backbone, filled by the fixture's deterministic weight rule and
converted by our converter, must reproduce TAO's head outputs (fixtures/tao_reference/networks, NCHW there,
NHWC here).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from centerpose_jax.convert import pytorch
from centerpose_jax.models import CenterPose
from centerpose_jax.models import HEADS
from centerpose_jax.models import fan
from centerpose_jax.models import layers
from centerpose_jax.testing import weight_rule

ARCHS = ("fan_small", "fan_base", "fan_large")
# networks.md section 4: TAO's model.parameters() (FAN has no unused parameters) and the `base.*` part.
TAO_PARAMS = {"fan_small": 33_463_538, "fan_base": 58_272_738, "fan_large": 84_878_878}
TAO_BACKBONE_PARAMS = {"fan_small": 28_390_224, "fan_base": 53_125_696, "fan_large": 79_694_972}


def _nhwc(array):
  return np.asarray(array, np.float32).transpose(0, 2, 3, 1)


def _tao_variables(tao_reference, arch):
  """TAO's rule-filled state_dict for `arch`, converted; every TAO key but the BN step counters is used."""
  state_dict = weight_rule.make_state_dict(tao_reference / "networks" / f"keys_{arch}.tsv")
  conversion = pytorch.convert_state_dict(state_dict, arch)
  assert all(key.endswith("num_batches_tracked") for key in conversion.unused_keys)
  return conversion.variables


@pytest.fixture(scope="module")
def fan_small_variables(tao_reference):
  return _tao_variables(tao_reference, "fan_small")


def _param_count(params):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params))


def _forward(model, variables, x):
  return jax.jit(lambda v, inputs: model.apply(v, inputs, train=False))(variables, x)


@pytest.mark.parametrize("arch", ARCHS)
def test_matches_tao_golden_outputs(tao_reference, fan_small_variables, arch):
  variables = fan_small_variables if arch == "fan_small" else _tao_variables(tao_reference, arch)
  assert _param_count(variables["params"]) == TAO_PARAMS[arch]
  assert _param_count(variables["params"]["base"]) == TAO_BACKBONE_PARAMS[arch]
  golden = np.load(tao_reference / "networks" / f"golden_{arch}.npz")
  outputs = _forward(CenterPose(model_type=arch), variables, _nhwc(golden["input"]))
  for head, channels in HEADS.items():
    assert outputs[head].shape == (1, 32, 32, channels)
    np.testing.assert_allclose(outputs[head], _nhwc(golden[head]), atol=1e-4, rtol=1e-4, err_msg=head)


@pytest.mark.parametrize("query_block", [layers.ATTENTION_QUERY_BLOCK, 16])  # 16: 40 queries in 3 blocks
def test_cpu_attention_equals_dot_product_attention_and_its_gradients(query_block):
  q, k, v = (jax.random.normal(key, (2, 40, 4, 16)) * 3 for key in jax.random.split(jax.random.key(0), 3))
  cotangent = jax.random.normal(jax.random.key(1), q.shape)

  def value_and_grads(attention):
    out, vjp = jax.vjp(attention, q, k, v)
    return out, vjp(cotangent)

  expected, expected_grads = jax.jit(lambda: value_and_grads(jax.nn.dot_product_attention))()
  out, grads = jax.jit(lambda: value_and_grads(lambda *a: layers.cpu_attention(*a, query_block=query_block)))()
  np.testing.assert_allclose(out, expected, atol=1e-5)
  for grad, expected_grad in zip(grads, expected_grads):
    np.testing.assert_allclose(grad, expected_grad, atol=1e-4)


def test_dot_product_attention_in_float16_compiles_and_follows_float32():
  """JAX's own asks for the F16_F16_F32 dot algorithm in float16, which XLA:CPU and XLA:GPU refuse to compile;
  ours computes the same float16 attention and its gradients with the default algorithm, for every platform."""
  q, k, v = (jax.random.normal(key, (2, 40, 4, 16)) for key in jax.random.split(jax.random.key(2), 3))

  def loss(attention, *args):
    return jnp.sum(attention(*args).astype(jnp.float32) ** 2)

  half = [t.astype(jnp.float16) for t in (q, k, v)]
  with pytest.raises(ValueError, match="F16_F16_F32"):  # why ours exists; fails when JAX fixes it: drop ours then
    jax.jit(jax.grad(functools.partial(loss, jax.nn.dot_product_attention))).lower(*half).compile()
  out = jax.jit(layers.dot_product_attention)(*half)
  assert out.dtype == jnp.float16
  np.testing.assert_allclose(out.astype(np.float32), jax.nn.dot_product_attention(q, k, v), atol=5e-3)
  grads = jax.jit(jax.grad(functools.partial(loss, layers.dot_product_attention), argnums=(0, 1, 2)))(*half)
  expected = jax.grad(functools.partial(loss, jax.nn.dot_product_attention), argnums=(0, 1, 2))(q, k, v)
  for grad, expected_grad in zip(grads, expected):
    np.testing.assert_allclose(grad.astype(np.float32), expected_grad, atol=0.05, rtol=0.02)
  for platform in ("cpu", "cuda", "tpu"):
    text = export.export(jax.jit(jax.grad(functools.partial(loss, layers.attention()))),
                         platforms=[platform])(*half).mlir_module()
    assert "algorithm" not in text, platform


def test_class_attention_compiles_in_float16():
  attn = fan.ClassAttn(dim=32, num_heads=4, defs=layers.module_defs(jnp.float16))
  x = jax.random.normal(jax.random.key(3), (2, 17, 32))
  variables = attn.init(jax.random.PRNGKey(0), x)

  def loss(v):
    out = attn.apply(v, x)
    return jnp.sum(out.astype(jnp.float32)), out

  grads, out = jax.jit(jax.grad(loss, has_aux=True))(variables)
  assert out.shape == (2, 1, 32) and out.dtype == jnp.float16
  expected = fan.ClassAttn(dim=32, num_heads=4).apply(variables, x)
  np.testing.assert_allclose(out.astype(np.float32), expected, atol=2e-2, rtol=1e-2)
  assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


@pytest.mark.parametrize("value", [0.5, float("nan")])
def test_cotangent_boundary_changes_no_value_and_is_a_conditional_only_when_lowered_for_the_cpu(value):
  def loss(x):
    x = layers.cotangent_boundary(x)
    return jnp.sum(jnp.sin(x + layers.cotangent_boundary(2 * x)) ** 2)

  x = np.random.default_rng(3).standard_normal((2, 5, 4)).astype(np.float32)
  x[0, 0, 0] = value  # a NaN first element takes the other branch, which returns the cotangent unchanged too
  np.testing.assert_array_equal(layers.cotangent_boundary(x), x)
  plain = jax.grad(lambda x: jnp.sum(jnp.sin(x + 2 * x) ** 2))(x)
  np.testing.assert_array_equal(jax.jit(jax.grad(loss))(x), plain)
  compiled = jax.jit(jax.grad(loss)).lower(x).compile().as_text()
  assert compiled.count("conditional(") == 2  # survives XLA:CPU's optimisation (a barrier would not)
  for platform in ("cpu", "cuda", "tpu"):  # the predicate's comparison is lowered for the CPU only
    text = export.export(jax.jit(jax.grad(loss)), platforms=[platform])(x).mlir_module()
    assert text.count("stablehlo.compare") == (2 if platform == "cpu" else 0), platform


def test_compute_dtype_keeps_float32_params():
  model = fan.FANBackbone(model_type="fan_small", defs=layers.module_defs(jnp.bfloat16), name="base")
  x = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
  pyramid = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert {p.dtype for p in pyramid} == {jnp.dtype(jnp.bfloat16)}


def test_fourier_position_features_follow_rows_then_columns():
  pos = fan.fourier_position_features(3, 5)
  assert pos.shape == (3, 5, 64)
  y_part, x_part = pos[..., :32], pos[..., 32:]
  np.testing.assert_array_equal(y_part, np.broadcast_to(y_part[:, :1], y_part.shape))
  np.testing.assert_array_equal(x_part, np.broadcast_to(x_part[:1], x_part.shape))
  # Channel 0 is sin(2 pi (i + 1) / (n + 1e-6)); channel 1 is cos of the same angle (t_1 = t_0 = 1).
  np.testing.assert_allclose(y_part[:, 0, 0], np.sin(2 * np.pi * np.arange(1, 4) / 3), atol=1e-5)
  np.testing.assert_allclose(x_part[0, :, 1], np.cos(2 * np.pi * np.arange(1, 6) / 5), atol=1e-5)


def test_fan_block_drop_path_and_batch_norm_follow_train_flag():
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 16, 16))  # [B, N = 4 x 4 tokens, E]
  block = fan.FANBlock(dim=16, num_heads=2)

  @jax.jit
  def run(seed):
    variables = block.init(jax.random.key(1, impl="rbg"), x, 4, 4, train=False)  # rbg: quick to compile
    eval_out = block.apply(variables, x, 4, 4, train=False)
    train_out, updates = block.apply(variables, x, 4, 4, train=True, rngs={"dropout": seed},
                                     mutable=["batch_stats"])
    return eval_out, train_out, variables["batch_stats"], updates["batch_stats"]

  eval_out, out_a, stats_before, stats_after = run(jax.random.key(2, impl="rbg"))
  _, out_b, _, _ = run(jax.random.key(3, impl="rbg"))
  assert not np.allclose(out_a, out_b)  # DropPath draws from the 'dropout' rng.
  assert not np.allclose(out_a, eval_out)
  bn_mean = lambda stats: stats["mlp"]["mlp_v"]["dwconv"]["bn"]["mean"]
  assert not np.allclose(bn_mean(stats_after), bn_mean(stats_before))
  # DropPath acts per sample: with the same BN statistics, a sample whose two branches were both dropped
  # leaves the block unchanged, others do not.
  unchanged = [bool(np.allclose(out_a[b], x[b])) for b in range(x.shape[0])]
  assert any(unchanged) and not all(unchanged), unchanged


def test_gelu_is_the_exact_gelu_and_its_gradient():
  """layers.gelu (PyTorch's erf form) against JAX's exact GELU: values and derivatives within float32 rounding."""
  x = jnp.linspace(-8.0, 8.0, 100_001, dtype=jnp.float32)
  np.testing.assert_allclose(layers.gelu(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
  ours, exact = (jax.vmap(jax.grad(f))(x) for f in (layers.gelu, lambda v: jax.nn.gelu(v, approximate=False)))
  np.testing.assert_allclose(ours, exact, atol=2e-6)
  assert float(jnp.max(jnp.abs(layers.gelu(x) - jax.nn.gelu(x, approximate=True)))) > 1e-4  # not the tanh form
  assert layers.gelu(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16
