"""Trains the stand-in model a few steps on 8 devices and on 1 device with the same global batches.

Run in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=8 (tests/training/
test_data_parallel.py does). Prints one JSON line: the largest absolute difference of params and of
batch_stats between the two runs, and how much training changed them.
"""

import json
import sys

import jax
import numpy as np
from configs import default

from centerpose_jax import mesh as mesh_lib
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib
from centerpose_jax.models.tiny import TinyCenterPose
from standin import numpy_variables
from standin import random_batch

PER_DEVICE_BATCH = 1
STEPS = 3
SIZE = 32


def train(devices, batches, model, variables, config):
  mesh = mesh_lib.create_mesh(devices)
  optimizer = optim.create_optimizer(config.train, batches_per_epoch=len(batches))
  weights = losses.loss_weights(config.train.loss_config)
  state = state_lib.create_train_state(variables, optimizer, jax.random.PRNGKey(7), config.train.precision,
                                       mesh_lib.replicated_sharding(mesh))
  train_step = step_lib.make_train_step(model, optimizer, weights, config.train.precision, mesh)
  for batch in batches:
    state, _ = train_step(state, mesh_lib.shard_batch(batch, mesh))
  return jax.device_get(state.variables())


def max_difference(a, b):
  return max(float(np.abs(x - y).max()) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def main():
  devices = jax.devices()
  if len(devices) != 8:
    sys.exit(f"expected 8 devices, got {len(devices)}")
  config = default.get_config()
  config.train.optim.lr = 1e-2
  model = TinyCenterPose(dropout_rate=0.2)
  variables = numpy_variables(model, (1, SIZE, SIZE, 3))
  rng = np.random.default_rng(0)
  batches = [random_batch(rng, batch=8 * PER_DEVICE_BATCH, symmetry=2, size=SIZE) for _ in range(STEPS)]
  eight = train(devices, batches, model, variables, config)
  one = train(devices[:1], batches, model, variables, config)
  print(json.dumps({
      "params": max_difference(eight["params"], one["params"]),
      "batch_stats": max_difference(eight["batch_stats"], one["batch_stats"]),
      "params_change": max_difference(one["params"], variables["params"]),
      "batch_stats_change": max_difference(one["batch_stats"], variables["batch_stats"]),
  }))


if __name__ == "__main__":
  main()
