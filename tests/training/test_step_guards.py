"""big_vision's guard rails on the train step: no implicit host<->device copy inside it, and its state donated."""

import jax
import numpy as np
import pytest

from centerpose_jax import config as config_lib
from centerpose_jax import mesh as mesh_lib
from centerpose_jax.models import create_model
from centerpose_jax.models import registry
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib
from standin import random_batch

SIZE = 32


@pytest.fixture(scope="module")
def step_and_state():
  config = config_lib.get_config()
  config.model.backbone.model_type = registry.TINY
  model = create_model(config)
  mesh = mesh_lib.create_mesh(jax.devices()[:1])
  optimizer = optim.create_optimizer(config.train, batches_per_epoch=10)
  variables = state_lib.init_variables(model, jax.random.PRNGKey(0), (1, SIZE, SIZE, 3))

  def new_state():
    return state_lib.create_train_state(variables, optimizer, jax.random.PRNGKey(1), "fp32",
                                        mesh_lib.replicated_sharding(mesh))

  train_step = step_lib.make_train_step(model, optimizer, losses.loss_weights(config.train.loss_config), "fp32",
                                        mesh)
  return train_step, new_state, mesh


def test_an_implicit_host_to_device_copy_in_the_step_fails_loudly(step_and_state):
  train_step, new_state, _ = step_and_state
  numpy_batch = random_batch(np.random.default_rng(0), batch=2, symmetry=1, size=SIZE)
  with pytest.raises(Exception, match="host-to-device transfer"):
    train_step(new_state(), numpy_batch)


def test_the_step_runs_on_placed_arrays_and_donates_its_state(step_and_state):
  train_step, new_state, mesh = step_and_state
  batch = mesh_lib.shard_batch(random_batch(np.random.default_rng(0), batch=2, symmetry=1, size=SIZE), mesh)
  state = new_state()
  old_leaves = jax.tree_util.tree_leaves(state.params)
  state, metrics = train_step(state, batch)
  assert np.isfinite(float(metrics["loss"])) and int(state.step) == 1
  assert all(leaf.is_deleted() for leaf in old_leaves)  # the step reused the old state's buffers
