"""Mixed precision: float32 state under fp16 compute; dynamic loss scaling skips non-finite steps; the half-precision
steps lower for GPUs and TPUs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from configs import default

from centerpose_jax import mesh as mesh_lib
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import precision as precision_lib
from centerpose_jax.training import setup
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib
from centerpose_jax.models.tiny import TinyCenterPose
from standin import numpy_variables
from standin import random_batch


def _setup(precision):
  config = default.get_config()
  model = TinyCenterPose(dtype=precision_lib.compute_dtype(precision))
  mesh = mesh_lib.create_mesh(jax.devices()[:1])
  optimizer = optim.create_optimizer(config.train, batches_per_epoch=10)
  state = state_lib.create_train_state(numpy_variables(model, (1, 32, 32, 3)), optimizer, jax.random.PRNGKey(0),
                                       precision, mesh_lib.replicated_sharding(mesh))
  train_step = step_lib.make_train_step(model, optimizer, losses.loss_weights(config.train.loss_config),
                                        precision, mesh)
  return state, train_step, mesh


def _host(tree):
  return jax.tree_util.tree_map(np.array, tree)


def test_fp16_skips_a_step_with_non_finite_gradients_and_halves_the_scale():
  state, train_step, mesh = _setup("fp16")
  rng = np.random.default_rng(0)
  good = random_batch(rng, batch=2, symmetry=1, size=32)
  bad = dict(good, input=good["input"].copy())
  bad["input"][0, 3, 3, 0] = np.inf

  state, metrics = train_step(state, mesh_lib.shard_batch(good, mesh))
  assert bool(metrics["grads_finite"]) and int(state.skipped_steps) == 0
  assert float(state.loss_scale["scale"]) == precision_lib.INITIAL_FP16_SCALE
  assert int(state.loss_scale["counter"]) == 1
  before = _host(state)

  state, metrics = train_step(state, mesh_lib.shard_batch(bad, mesh))
  assert not bool(metrics["grads_finite"])
  after = _host(state)
  for name in ("params", "batch_stats", "opt_state"):  # the update was skipped, bit for bit
    jax.tree_util.tree_map(np.testing.assert_array_equal, getattr(after, name), getattr(before, name))
  assert int(after.step) == 2 and int(after.skipped_steps) == 1
  assert float(after.loss_scale["scale"]) == precision_lib.INITIAL_FP16_SCALE / 2
  assert int(after.loss_scale["counter"]) == 0

  state, metrics = train_step(state, mesh_lib.shard_batch(good, mesh))
  assert bool(metrics["grads_finite"]) and int(state.skipped_steps) == 1
  # The model computed in float16; parameters and optimizer state stay float32.
  for leaf in jax.tree_util.tree_leaves((state.params, state.batch_stats, state.opt_state)):
    assert leaf.dtype in (jnp.float32, jnp.int32)
  changed = jax.tree_util.tree_map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.params, after.params)
  assert max(jax.tree_util.tree_leaves(changed)) > 0


def test_unknown_precision_is_rejected():
  with pytest.raises(ValueError, match="fp32, bf16, fp16"):
    precision_lib.compute_dtype("fp8")


@pytest.mark.parametrize("backbone", ["DLA34", "fan_small"])
def test_half_precision_train_steps_lower_for_accelerators_with_xla_convolutions_and_no_float16_dot_algorithm(backbone):
  """The train step of bench/versus_pytorch.py's fp16 and bf16 rows on a GPU, lowered here for CUDA and TPU: no dot
  asks for a float16 algorithm (XLA:GPU refused, when compiling, the F16_F16_F32 that jax.nn.dot_product_attention
  asks for in float16: docs/benchmarks.md, "On a GPU"; its bf16 one compiled and ran there), and the step has more
  of XLA's convolutions than the same step lowered for the CPU, where `models.conv` replaces some with its own
  formulations."""
  config = default.get_config()
  config.model.backbone.model_type = backbone
  config.model.head_conv = 32
  if backbone == "DLA34":
    config.model.backbone.width_multiplier = 0.25
  config.dataset.input_res, config.dataset.output_res, config.dataset.batch_size = 64, 16, 1
  batch = random_batch(np.random.default_rng(0), batch=1, symmetry=1, size=64)
  for precision in ("fp16", "bf16"):
    config.train.precision = precision
    parts = setup.setup(config, devices=jax.devices()[:1], batches_per_epoch=10)
    state = jax.eval_shape(lambda: parts.new_state(parts.init_variables(jax.random.key(0)), jax.random.PRNGKey(1)))
    traced = parts.train_step.trace(state, mesh_lib.shard_batch(batch, parts.mesh))
    texts = {platform: traced.lower(lowering_platforms=(platform,)).as_text() for platform in ("cpu", "cuda", "tpu")}
    for platform in ("cuda", "tpu"):
      assert "precision_type = f16" not in texts[platform], (precision, platform)
      assert texts[platform].count("stablehlo.convolution") > texts["cpu"].count("stablehlo.convolution"), platform
