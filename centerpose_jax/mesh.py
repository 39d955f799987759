"""The devices a task runs on, the `Mesh(("data",))` over them and the shardings of its arrays.

Every task that runs the network (training, its validation, evaluate, infer) uses one rule for its devices
(`task_devices`): in a multi-process job every device of the job, else the section's `num_gpus` / `gpu_ids` of
this host (TAO's rule, `config.resolve_device_ids`). Batches are split along their leading axis over the mesh's
"data" axis; parameters, optimizer state and outputs that every process reads are replicated.
"""

from typing import List, Sequence

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from centerpose_jax import config as config_lib

DATA_AXIS = "data"


def task_devices(config, section: str) -> List[jax.Device]:
  """The devices of the task whose config section is `section` ("train", "evaluate" or "inference"): every
  device of a multi-process job, else this host's devices chosen by the section's `num_gpus` and `gpu_ids`.

  Raises:
    config.ConfigError: more devices asked for than this host has.
  """
  if jax.process_count() > 1:
    return jax.devices()
  local = jax.local_devices()
  settings = config[section]
  return [local[i] for i in config_lib.resolve_device_ids(settings.num_gpus, settings.gpu_ids, len(local), section)]


def create_mesh(devices: Sequence[jax.Device]) -> Mesh:
  """A one-axis ("data") mesh over `devices`."""
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated_sharding(mesh: Mesh) -> NamedSharding:
  """Every device holds the whole array (parameters, optimizer state, metrics)."""
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the "data" axis."""
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """This process's share of a global batch placed on `mesh`, split along the leading axis over "data".

  Every numpy array becomes a global jax.Array (`jax.make_array_from_process_local_data`); other values
  (metadata lists) are returned unchanged.
  """
  sharding = batch_sharding(mesh)
  return {key: (jax.make_array_from_process_local_data(sharding, value) if isinstance(value, np.ndarray)
                else value) for key, value in batch.items()}


def shard_full_copy(array: np.ndarray, mesh: Mesh) -> jax.Array:
  """A global array sharded along "data" from a numpy array that every process holds in full."""
  return jax.make_array_from_callback(array.shape, batch_sharding(mesh), lambda index: array[index])


def replicate(tree, mesh: Mesh):
  """A pytree (numpy arrays, or jax.Arrays placed anywhere) replicated on every device of `mesh`; numpy arrays
  must be the same in every process."""
  sharding = replicated_sharding(mesh)

  def place(leaf):
    if isinstance(leaf, jax.Array):
      return jax.device_put(leaf, sharding)  # nothing moves when it is already replicated there
    leaf = np.asarray(leaf)
    return jax.make_array_from_callback(leaf.shape, sharding, lambda index: leaf[index])

  return jax.tree_util.tree_map(place, tree)


def to_host(tree):
  """numpy copies of a pytree of replicated arrays (each process reads its own replica; works multi-host)."""
  return jax.tree_util.tree_map(
      lambda x: np.array(x.addressable_data(0)) if isinstance(x, jax.Array) else np.array(x), tree)
