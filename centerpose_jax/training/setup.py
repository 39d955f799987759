"""The trainer's wiring in one function: devices, mesh, data sources and loader, model, optimizer, state, step.

`setup(config)` builds what a training run is made of, without running anything; `tasks/train.py` runs it, and
tests and benchmarks call it to get exactly the step training uses (`bench/train_throughput.py`,
`tests/training/loop_run.py`, which wraps `Setup.train_step` to inject faults). The model comes from the config
(`model.backbone.model_type`; the test network `models.registry.TINY` compiles in seconds).
"""

import dataclasses
from typing import Callable, List, Optional, Tuple

import jax
import optax
from jax.sharding import Mesh

from centerpose_jax import config as config_lib
from centerpose_jax import distributed
from centerpose_jax import mesh as mesh_lib
from centerpose_jax import models
from centerpose_jax.data import loader
from centerpose_jax.training import losses
from centerpose_jax.training import optim
from centerpose_jax.training import precision as precision_lib
from centerpose_jax.training import state as state_lib
from centerpose_jax.training import step as step_lib


@dataclasses.dataclass
class Setup:
  """The parts of a training run.

  Attributes:
    devices: the mesh's devices (`mesh.task_devices(config, "train")`, or those given to `setup`).
    mesh: `Mesh(("data",))` over them.
    train_loader: the `loader.TrainLoader` of `dataset.train_data` (None when built without data).
    val_source: the checked source of `dataset.val_data` (None without validation data).
    skipped_samples: invalid samples left out of both (`dataset.skip_invalid`).
    steps_per_epoch: batches per epoch (the loader's, or `batches_per_epoch` without data).
    global_batch: `dataset.batch_size` x the number of devices.
    model: `models.create_model(config)` in the compute dtype of `train.precision` (with
      `train.activation_checkpointing`).
    optimizer: `optim.create_optimizer` for `steps_per_epoch`.
    schedule: its learning rate per optimizer step.
    accumulation: batches per optimizer step (`train.grad_accumulation_steps`).
    train_step: `step.make_train_step`'s jitted step over `mesh` (state donated, under a transfer guard).
    input_shape: (1, height, width, 3) of the network input, for initialisation.
  """
  devices: List[jax.Device]
  mesh: Mesh
  train_loader: Optional[loader.TrainLoader]
  val_source: Optional[object]
  skipped_samples: int
  steps_per_epoch: int
  global_batch: int
  model: object
  optimizer: optax.GradientTransformation
  schedule: Callable[[int], float]
  accumulation: int
  train_step: Callable
  input_shape: Tuple[int, int, int, int]
  precision: str

  @property
  def replicated(self):
    return mesh_lib.replicated_sharding(self.mesh)

  @property
  def num_local_devices(self) -> int:
    return len([d for d in self.devices if d.process_index == jax.process_index()])

  @property
  def share(self) -> Tuple[int, int]:
    """(index, count): this process's block of each global batch (`distributed.data_share`)."""
    return distributed.data_share(self.devices)

  def init_variables(self, rng: jax.Array) -> dict:
    """Fresh {"params", "batch_stats"} of the model, replicated on the mesh."""
    return state_lib.init_variables(self.model, rng, self.input_shape, self.replicated)

  def new_state(self, variables: dict, rng: jax.Array) -> state_lib.TrainState:
    """A TrainState (fresh optimizer state) of `variables`, replicated on the mesh; `rng` seeds dropout."""
    return state_lib.create_train_state(variables, self.optimizer, rng, self.precision, self.replicated)

  def abstract_state(self) -> state_lib.TrainState:
    """The TrainState as ShapeDtypeStructs with the replicated sharding (for restoring a checkpoint)."""
    def fresh():
      variables = state_lib.init_variables(self.model, jax.random.PRNGKey(0), self.input_shape)
      return self.new_state(variables, jax.random.PRNGKey(0))
    shapes = jax.eval_shape(fresh)
    return jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=self.replicated), shapes)


def make_train_loader(source, dataset_config, seed: int, devices: List[jax.Device]) -> loader.TrainLoader:
  """The `loader.TrainLoader` of `source` for a mesh over `devices`: this process loads its block of each
  global batch (`distributed.data_share`), for its own devices."""
  index, count = distributed.data_share(devices)
  num_local_devices = len([d for d in devices if d.process_index == jax.process_index()])
  return loader.TrainLoader(source, dataset_config, seed=seed, num_local_devices=num_local_devices,
                            shard_index=index, shard_count=count)


def setup(config, *, seed: int = 0, devices: Optional[List[jax.Device]] = None,
          batches_per_epoch: Optional[int] = None) -> Setup:
  """Builds the parts of a training run of `config` (nothing is compiled or run).

  Args:
    config: the whole config. Its `dataset.train_data` (and `val_data`, if set) are opened and checked
      (`loader.check_dataset`: every label and image; raises `annotations.DatasetError` listing invalid ones
      unless `dataset.skip_invalid`).
    seed: the loader's seed (data order and augmentation).
    devices: the mesh's devices; default `mesh.task_devices(config, "train")`.
    batches_per_epoch: without `dataset.train_data` (benchmarks on generated batches), the epoch length the
      learning-rate schedule assumes; there is no loader then.
  """
  devices = list(devices) if devices is not None else mesh_lib.task_devices(config, "train")
  mesh = mesh_lib.create_mesh(devices)
  skipped = 0
  train_loader = None
  if config.dataset.train_data:
    checked = loader.check_dataset(loader.open_source(config.dataset.train_data), config.dataset)
    skipped += checked.skipped
    train_loader = make_train_loader(checked.source, config.dataset, seed, devices)
    batches_per_epoch = train_loader.steps_per_epoch
  elif batches_per_epoch is None:
    raise ValueError("setup without dataset.train_data needs batches_per_epoch")
  val_source = None
  if config.dataset.val_data:
    checked = loader.check_dataset(loader.open_source(config.dataset.val_data), config.dataset, needs_evaluation=True)
    skipped += checked.skipped
    val_source = checked.source

  precision = config.train.precision
  model = models.create_model(config, dtype=precision_lib.compute_dtype(precision),
                               activation_checkpointing=bool(config.train.activation_checkpointing))
  optimizer = optim.create_optimizer(config.train, batches_per_epoch)
  weights = losses.loss_weights(config.train.loss_config, config.dataset)
  width, height = config_lib.input_size(config.dataset)
  return Setup(
      devices=devices, mesh=mesh, train_loader=train_loader, val_source=val_source, skipped_samples=skipped,
      steps_per_epoch=batches_per_epoch, global_batch=int(config.dataset.batch_size) * len(devices), model=model,
      optimizer=optimizer, schedule=optim.schedule_from_config(config.train, batches_per_epoch),
      accumulation=optim.accumulation_steps(config.train),
      train_step=step_lib.make_train_step(model, optimizer, weights, precision, mesh),
      input_shape=(1, height, width, 3), precision=precision)
