"""Optimizer: TAO's multi-step schedule at epoch boundaries, gradient clipping, gradient accumulation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from configs import default

from centerpose_jax import mesh as mesh_lib
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib
from centerpose_jax.models.tiny import TinyCenterPose
from standin import numpy_variables
from standin import random_batch


def _train_config(lr=1e-2, lr_steps=(2, 4), lr_decay=0.1, clip=0.0, accumulation=1):
  train = default.get_config().train
  train.optim.lr = lr
  train.optim.lr_steps = list(lr_steps)
  train.optim.lr_decay = lr_decay
  train.clip_grad_val = clip
  train.grad_accumulation_steps = accumulation
  return train


def _tao_multistep_lr(lr, lr_steps, lr_decay, epoch):
  """torch MultiStepLR stepped once per epoch: the rate used during (0-based) `epoch`."""
  return lr * lr_decay ** sum(epoch >= milestone for milestone in lr_steps)


@pytest.mark.parametrize("accumulation,batches_per_epoch", [(1, 3), (2, 5), (3, 4)])
def test_every_update_uses_the_rate_of_its_epoch(accumulation, batches_per_epoch):
  """Adam's first-moment/second-moment ratio is 1 for a constant gradient, so each update moves the
  parameter by exactly the learning rate in use: the deltas spell out the schedule batch by batch."""
  lr, lr_steps, lr_decay = 1e-2, (2, 4), 0.1
  optimizer = optim.create_optimizer(_train_config(lr, lr_steps, lr_decay, accumulation=accumulation),
                                     batches_per_epoch)
  params = jnp.zeros([1])
  opt_state = optimizer.init(params)
  update = jax.jit(optimizer.update)
  for batch_index in range(6 * batches_per_epoch):
    updates, opt_state = update(jnp.ones([1]), opt_state, params)
    new_params = optax.apply_updates(params, updates)
    delta = float(params[0] - new_params[0])
    params = new_params
    is_update = (batch_index + 1) % accumulation == 0
    epoch = batch_index // batches_per_epoch
    expected = _tao_multistep_lr(lr, lr_steps, lr_decay, epoch) if is_update else 0.0
    np.testing.assert_allclose(delta, expected, rtol=1e-4, atol=1e-9, err_msg=f"batch {batch_index} (epoch {epoch})")


def test_schedule_boundaries_in_optimizer_steps():
  schedule = optim.learning_rate_schedule(1.0, [90, 120], 0.1, batches_per_epoch=10, accumulation_steps=1)
  assert float(schedule(899)) == 1.0
  np.testing.assert_allclose(float(schedule(900)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(1199)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(float(schedule(1200)), 0.01, rtol=1e-6)
  assert optim.optimizer_steps_before_epoch(90, 10, 4) == 225


@pytest.mark.parametrize("clip,expected_factor", [(100.0, 0.1), (0.0, 1.0), (2000.0, 1.0)])
def test_global_norm_clipping_before_adam(clip, expected_factor):
  """Adam's first moment after one step is (1 - beta1) * the gradient it received."""
  optimizer = optim.create_optimizer(_train_config(clip=clip), batches_per_epoch=10)
  params = {"a": jnp.zeros([3]), "b": jnp.zeros([4])}
  grads = {"a": jnp.asarray([600.0, 0.0, 0.0]), "b": jnp.asarray([0.0, 800.0, 0.0, 0.0])}  # norm 1000
  _, opt_state = optimizer.update(grads, optimizer.init(params), params)
  adam_state = [s for s in jax.tree_util.tree_leaves(opt_state, is_leaf=lambda x: hasattr(x, "mu"))
                if hasattr(s, "mu")][0]
  for name in grads:
    np.testing.assert_allclose(np.asarray(adam_state.mu[name]), 0.1 * expected_factor * np.asarray(grads[name]),
                               rtol=1e-6)


def test_accumulated_half_batches_equal_one_full_batch():
  """Two accumulated batches of 2 give the same update as one batch of 4 (a model without BatchNorm)."""
  model = TinyCenterPose(batch_norm=False, dropout_rate=0.0)
  batch = random_batch(np.random.default_rng(0), batch=4, symmetry=2, size=32)
  weights = losses.loss_weights(default.get_config().train.loss_config)
  mesh = mesh_lib.create_mesh(jax.devices()[:1])
  variables = numpy_variables(model, (1, 32, 32, 3))
  results = {}
  for accumulation, batches in ((1, [batch]), (2, [{k: v[:2] for k, v in batch.items()},
                                                   {k: v[2:] for k, v in batch.items()}])):
    optimizer = optim.create_optimizer(_train_config(lr=1e-2, clip=0.5, accumulation=accumulation), 10)
    state = state_lib.create_train_state(variables, optimizer, jax.random.PRNGKey(1), "fp32",
                                         mesh_lib.replicated_sharding(mesh))
    train_step = step_lib.make_train_step(model, optimizer, weights, "fp32", mesh)
    for micro_batch in batches:
      state, _ = train_step(state, mesh_lib.shard_batch(micro_batch, mesh))
    results[accumulation] = jax.device_get(state.params)
  changed = jax.tree_util.tree_map(lambda a, b: np.abs(a - b).max(), results[1], variables["params"])
  assert max(jax.tree_util.tree_leaves(changed)) > 1e-3  # the update happened
  jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), results[1], results[2])
