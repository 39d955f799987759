"""Checkpoints across device counts (issue 15, item 3), run by tests/training/test_topology.py.

  python topology_run.py save DIR     on 8 devices: 2 steps, checkpoint, 2 more steps -> DIR/reference.npz
  python topology_run.py resume DIR   on 2 devices: restore the checkpoint, the same 2 more steps

Run in a fresh process with XLA_FLAGS=--xla_force_host_platform_device_count=N set before jax is imported.
The global batch is 8 in both runs (1 sample per device on 8 devices, 4 on 2). Prints one JSON line.
"""

import json
import pathlib
import sys

import jax
import numpy as np
from configs import default

from centerpose_jax import mesh as mesh_lib
from centerpose_jax import checkpoint
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib
from centerpose_jax.models.tiny import TinyCenterPose
from standin import numpy_variables
from standin import random_batch
from tools import checkpoint_info

SIZE = 32
GLOBAL_BATCH = 8
STEPS_BEFORE, STEPS_AFTER = 2, 2


class Run:
  """The tiny model's training pieces on a mesh of `devices`."""

  def __init__(self, devices):
    self.config = default.get_config()
    self.config.train.optim.lr = 1e-3
    self.model = TinyCenterPose(dropout_rate=0.2)
    self.mesh = mesh_lib.create_mesh(devices)
    self.optimizer = optim.create_optimizer(self.config.train, batches_per_epoch=STEPS_BEFORE + STEPS_AFTER)
    self.step = step_lib.make_train_step(self.model, self.optimizer, losses.loss_weights(self.config.train.loss_config),
                                         "fp32", self.mesh)
    self.sharding = mesh_lib.replicated_sharding(self.mesh)

  def new_state(self):
    variables = numpy_variables(self.model, (1, SIZE, SIZE, 3))
    return state_lib.create_train_state(variables, self.optimizer, jax.random.PRNGKey(7), "fp32", self.sharding)

  def abstract_state(self):
    return jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=self.sharding),
                                  jax.eval_shape(self.new_state))

  def train(self, state, batches):
    for batch in batches:
      state, _ = self.step(state, mesh_lib.shard_batch(batch, self.mesh))
    return state


def batches():
  rng = np.random.default_rng(0)
  return [random_batch(rng, batch=GLOBAL_BATCH, symmetry=2, size=SIZE) for _ in range(STEPS_BEFORE + STEPS_AFTER)]


def flat(variables):
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(variables))[0]}


def main():
  mode, directory = sys.argv[1], pathlib.Path(sys.argv[2])
  run = Run(jax.devices())
  data = batches()
  manager = checkpoint.CheckpointManager(directory / "train", asynchronous=False)
  if mode == "save":
    state = run.train(run.new_state(), data[:STEPS_BEFORE])
    manager.save(state, {"epoch": 1, "seed": 0})
    saved = flat(state.variables())
    final = flat(run.train(state, data[STEPS_BEFORE:]).variables())
    np.savez(directory / "reference.npz", **final)
    report = {"devices": len(jax.devices()), "change": max(float(np.abs(final[k] - saved[k]).max()) for k in final)}
  else:
    state, meta = manager.restore(run.abstract_state())
    restored_devices = len(jax.tree_util.tree_leaves(state.params)[0].sharding.device_set)
    final = flat(run.train(state, data[STEPS_BEFORE:]).variables())
    reference = np.load(directory / "reference.npz")
    info = checkpoint_info.describe(directory)
    report = {"devices": len(jax.devices()), "restored_on": restored_devices, "step": int(meta["step"]),
              "difference": max(float(np.abs(final[k] - reference[k]).max()) for k in final),
              "fingerprint": info["fingerprint"],
              "loaded": checkpoint.fingerprint(checkpoint.load_variables(directory))}
  manager.close()
  print(json.dumps(report))


if __name__ == "__main__":
  main()
