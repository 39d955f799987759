"""Tests for the assembled CenterPose network (models/centerpose.py, heads.py, convgru.py).

Parity: TAO's DLA34 filled by the fixture's deterministic weight rule, converted by our converter, must
reproduce TAO's head outputs (fixtures/tao_reference/networks, NCHW there, NHWC here).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from centerpose_jax.convert import pytorch
from centerpose_jax.models import CenterPose
from centerpose_jax.models import HEADS
from centerpose_jax.models import conv
from centerpose_jax.models import create_model
from centerpose_jax.models import heads
from centerpose_jax.models import layers
from configs import default
from centerpose_jax.testing import weight_rule

TAO_DLA34_PARAMS = 19_840_786  # networks.md section 4, TAO's model.parameters()
TAO_FAN_SMALL_PARAMS = 33_463_538
DEAD_PROJECT_PARAMS = 41_728  # base.level{3,4}.project.*: not built by us (never affect TAO's output)
# Compute dtypes against the float32 reference, max |diff| over all heads (head std 0.43-0.91). Measured on
# the 128x128 golden input: bfloat16 0.043, float16 0.006.
DTYPE_TOLERANCE = {jnp.bfloat16: 0.08, jnp.float16: 0.015}


@pytest.fixture(scope="module")
def networks_dir(tao_reference):
  return tao_reference / "networks"


@pytest.fixture(scope="module")
def dla34_variables(networks_dir):
  return pytorch.from_tao_state_dict(weight_rule.make_state_dict(networks_dir / "keys_DLA34.tsv"), "DLA34")


def _nhwc(array):
  return np.asarray(array, np.float32).transpose(0, 2, 3, 1)


def _forward(model, variables, x):
  return jax.jit(lambda v, inputs: model.apply(v, inputs, train=False))(variables, x)


@pytest.mark.parametrize("conv_impl", [conv.CPU, conv.NATIVE])
def test_dla34_matches_tao_golden_outputs(networks_dir, dla34_variables, conv_impl):
  golden = np.load(networks_dir / "golden_DLA34.npz")
  outputs = _forward(CenterPose(conv_impl=conv_impl), dla34_variables, _nhwc(golden["input"]))
  assert set(outputs) == set(HEADS)
  for head, channels in HEADS.items():
    assert outputs[head].shape == (1, 32, 32, channels) and outputs[head].dtype == jnp.float32
    np.testing.assert_allclose(outputs[head], _nhwc(golden[head]), atol=1e-4, rtol=1e-4, err_msg=head)


def test_dla34_matches_tao_golden_outputs_at_512(networks_dir, dla34_variables):
  golden = np.load(networks_dir / "golden_DLA34_512.npz")
  x = weight_rule.make_input((1, 3, 512, 512))
  np.testing.assert_array_equal(x.reshape(-1)[:16], golden["input_first16"])
  outputs = _forward(CenterPose(), dla34_variables, _nhwc(x))
  for head in HEADS:  # the golden outputs are stored as float16 (rounding error <= 9.8e-4)
    np.testing.assert_allclose(outputs[head], _nhwc(golden[head]), atol=2e-3, err_msg=head)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16], ids=["bfloat16", "float16"])
def test_reduced_precision_compute_tracks_float32(networks_dir, dla34_variables, dtype):
  golden = np.load(networks_dir / "golden_DLA34.npz")
  model = CenterPose(dtype=dtype)
  x = _nhwc(golden["input"])
  params_dtypes = jax.tree.leaves(jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False)))
  assert {leaf.dtype for leaf in params_dtypes} == {jnp.dtype(jnp.float32)}
  outputs = _forward(model, dla34_variables, x)
  errors = {head: float(np.abs(outputs[head] - _nhwc(golden[head])).max()) for head in HEADS}
  assert all(outputs[head].dtype == jnp.float32 for head in HEADS)
  assert max(errors.values()) < DTYPE_TOLERANCE[dtype], errors
  assert min(errors.values()) > 0  # the compute really ran in reduced precision


def test_param_count_equals_tao_minus_dead_projections(networks_dir):
  variables = pytorch.model_variable_shapes(CenterPose())
  count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(variables["params"]))
  dead = sum(int(np.prod(shape)) for key, shape, _ in weight_rule.read_keys(networks_dir / "keys_DLA34.tsv")
             if key.startswith(("base.level3.project.", "base.level4.project."))
             and key.endswith(("weight", "bias")))
  assert dead == DEAD_PROJECT_PARAMS
  assert count == TAO_DLA34_PARAMS - DEAD_PROJECT_PARAMS


def test_any_multiple_of_32_works_including_non_square():
  for model, channels_at_stride4 in ((CenterPose(), 64), (CenterPose(width_multiplier=0.5), 32)):
    x = jnp.zeros((2, 96, 160, 3))
    variables = jax.eval_shape(lambda m=model: m.init(jax.random.PRNGKey(0), x, train=False))
    outputs = jax.eval_shape(lambda v, m=model: m.apply(v, x, train=False), variables)
    assert {head: out.shape for head, out in outputs.items()} == {
        head: (2, 24, 40, channels) for head, channels in HEADS.items()}
    assert variables["params"]["convGRU"]["cell0"]["Wir"]["kernel"].shape[-1] == channels_at_stride4
    assert variables["params"]["hm"]["0"]["kernel"].shape == (3, 3, channels_at_stride4, 256)
  with pytest.raises(ValueError, match="multiples of 32"):
    CenterPose().init(jax.random.PRNGKey(0), jnp.zeros((1, 100, 160, 3)), train=False)


def test_create_model_picks_the_backbone_from_the_config():
  config = default.get_config()
  assert config.model.backbone.model_type == "DLA34"  # the default (TAO's schema has fan_small)
  config.model.backbone.model_type = "fan_small"
  fan_small = create_model(config)
  count = sum(int(np.prod(leaf.shape))
              for leaf in jax.tree.leaves(pytorch.model_variable_shapes(fan_small)["params"]))
  assert count == TAO_FAN_SMALL_PARAMS
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.5
  dla34 = create_model(config.model, dtype=jnp.bfloat16, conv_impl=conv.NATIVE)
  assert (dla34.model_type, dla34.width_multiplier, dla34.dtype, dla34.conv_impl) == (
      "DLA34", 0.5, jnp.bfloat16, conv.NATIVE)
  config.model.backbone.model_type = "fan_tiny"
  with pytest.raises(ValueError, match="unknown backbone"):
    pytorch.model_variable_shapes(create_model(config))


def test_heads_follow_tao_layout_with_and_without_convgru():
  with_gru = pytorch.tao_key_plan(pytorch.model_variable_shapes(CenterPose()))
  assert {"hm.0.weight", "hm.1.weight", "hm.1.bias", "hm.3.weight", "hm.3.bias"} <= set(with_gru)
  without_gru = pytorch.tao_key_plan(pytorch.model_variable_shapes(CenterPose(use_convGRU=False)))
  assert not any(key.startswith("convGRU.") or key.startswith("hm.1.") for key in without_gru)
  assert {"hm.0.weight", "hm.2.weight", "hm.2.bias"} <= set(without_gru)
  single_conv = pytorch.tao_key_plan(pytorch.model_variable_shapes(CenterPose(head_conv=0)))
  assert {key for key in single_conv if key.startswith("hps.")} == {"hps.weight", "hps.bias"}


def test_head_initialisation_follows_tao():
  x = jnp.zeros((1, 8, 8, 4))
  for name, classes in HEADS.items():
    heatmap = heads.is_heatmap(name)
    params = heads.Head(classes, 64, heatmap=heatmap).init(jax.random.key(0, impl="rbg"), x)["params"]
    final_bias = np.full(classes, -2.19 if heatmap else 0.0, np.float32)
    np.testing.assert_array_equal(params["3"]["bias"], final_bias)
    assert bool(np.any(params["0"]["bias"] != 0)) == heatmap  # PyTorch's default for heatmaps, else zero
    np.testing.assert_array_equal(params["1"]["scale"], np.ones(64))
  assert heads.is_heatmap("hm_hp") and not heads.is_heatmap("hps")
  assert (heads.group_norm_groups(256), heads.group_norm_groups(48)) == (32, 16)


@pytest.mark.parametrize("groups,channels", [(32, 256), (16, 48)])
def test_group_norm_equals_flax_group_norm_and_its_gradients(groups, channels):
  """The heads' GroupNorm (per-channel sums first) against flax's: same parameters, values and gradients."""
  x = jnp.asarray(np.random.default_rng(0).normal(3.0, 2.0, size=(2, 5, 7, channels)).astype(np.float32))
  ours = layers.GroupNorm(num_groups=groups)
  flax_norm = nn.GroupNorm(num_groups=groups, epsilon=1e-5, use_fast_variance=False)
  variables = flax_norm.init(jax.random.key(0), x)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(0), x)) == jax.tree.map(jnp.shape, variables)
  rng = np.random.default_rng(1)
  variables = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape).astype(np.float32)), variables)
  cotangent = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))
  def loss_and_grads(module):
    return jax.value_and_grad(lambda v, x: jnp.sum(module.apply(v, x) * cotangent), (0, 1))(variables, x)

  (our_loss, our_grads), (flax_loss, flax_grads) = loss_and_grads(ours), loss_and_grads(flax_norm)
  np.testing.assert_allclose(our_loss, flax_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), our_grads, flax_grads)
  full = ours.apply(variables, x)
  np.testing.assert_allclose(full, flax_norm.apply(variables, x), atol=2e-5)
  half = layers.GroupNorm(num_groups=groups, dtype=jnp.bfloat16).apply(variables, x.astype(jnp.bfloat16))
  assert half.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=0.05)
  with pytest.raises(ValueError, match="do not split into 5 groups"):
    layers.GroupNorm(num_groups=5).init(jax.random.key(0), x[..., :48])


def test_group_norm_shift_equals_norm_of_the_sum_and_its_gradients():
  """GroupNorm(x, shift) (the heads fold their first conv's bias in) is GroupNorm(x + shift), gradients with it."""
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.normal(1.0, 2.0, size=(2, 5, 7, 64)).astype(np.float32))
  shift = jnp.asarray(rng.normal(0.0, 3.0, size=(64,)).astype(np.float32))
  norm = layers.GroupNorm(num_groups=16)
  variables = jax.tree.map(lambda v: jnp.asarray(rng.normal(size=v.shape).astype(np.float32)),
                           norm.init(jax.random.key(0), x))
  cotangent = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))
  folded = jax.value_and_grad(lambda v, x, s: jnp.sum(norm.apply(v, x, s) * cotangent), (0, 1, 2))
  added = jax.value_and_grad(lambda v, x, s: jnp.sum(norm.apply(v, x + s) * cotangent), (0, 1, 2))
  (folded_loss, folded_grads), (added_loss, added_grads) = folded(variables, x, shift), added(variables, x, shift)
  np.testing.assert_allclose(folded_loss, added_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), folded_grads, added_grads)
  np.testing.assert_allclose(norm.apply(variables, x, shift), norm.apply(variables, x + shift), atol=2e-5)


def test_train_mode_normalises_with_batch_statistics(dla34_variables):
  """train=True uses the batch's statistics and moves the running ones with Flax momentum 0.9."""
  model = CenterPose()
  x = np.random.default_rng(0).standard_normal((2, 64, 64, 3)).astype(np.float32)
  _, updates = jax.jit(lambda v, inputs: model.apply(v, inputs, train=True, mutable=["batch_stats"]))(
      dla34_variables, x)
  kernel = dla34_variables["params"]["base"]["base_layer"]["0"]["kernel"]
  stem = jax.lax.conv_general_dilated(x, kernel, (1, 1), ((3, 3), (3, 3)),
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  old = dla34_variables["batch_stats"]["base"]["base_layer"]["1"]
  new = updates["batch_stats"]["base"]["base_layer"]["1"]
  np.testing.assert_allclose(new["mean"], 0.9 * old["mean"] + 0.1 * np.mean(stem, axis=(0, 1, 2)), atol=1e-5)
  np.testing.assert_allclose(new["var"], 0.9 * old["var"] + 0.1 * np.var(stem, axis=(0, 1, 2)), rtol=1e-4)
