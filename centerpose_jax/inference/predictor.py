"""Predictors: a batch of network inputs in, the decoded detections on the host out.

One interface (`Predictor`), two implementations: `JaxPredictor` runs the one predict function
(`predict.make_predict_fn`) on a device mesh, `onnx_predictor.OnnxPredictor` an exported ONNX in onnxruntime;
both return the same seven arrays. `create_predictor(config, section)` builds the one a task's config asks for.
"""

import copy
from typing import Dict, Optional, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax import distributed
from centerpose_jax import mesh as mesh_lib
from centerpose_jax.inference.predict import make_predict_fn
from centerpose_jax.models import architecture
from centerpose_jax.models import create_model

DecodedBatch = Dict[str, np.ndarray]


class Predictor(Protocol):
  """Call with `inputs` [N, H, W, 3] float32 (normalised BGR, NHWC); returns the decoder's seven outputs
  (`decode.decode`) as numpy arrays with leading axis N, in output-grid units.

  Attributes:
    batch_size: the batch the predictor is built for (a task feeds batches of this size; fewer images are
      padded), or None when any N runs as it is.
  """
  batch_size: Optional[int]

  def __call__(self, inputs: np.ndarray) -> DecodedBatch:
    ...


class JaxPredictor:
  """The predict function jitted over `mesh` with one batch size (a shorter batch is padded to it).

  Args:
    model: the network (`models.create_model`).
    variables: its {"params", "batch_stats"} (numpy, or jax.Arrays anywhere); replicated on the mesh.
    batch_size: images per call (N <= batch_size), a multiple of the mesh's device count: the batch is split
      over the devices along "data".
    num_select: K, the detections kept per image.
    mesh: the devices (`mesh.create_mesh`); default this process's first device. May span several processes:
      each process passes the same inputs and reads every output.
  """

  def __init__(self, model, variables, *, batch_size: int, num_select: int = 100, mesh: Optional[Mesh] = None):
    self.mesh = mesh if mesh is not None else mesh_lib.create_mesh(jax.local_devices()[:1])
    if batch_size % self.mesh.devices.size:
      raise ValueError(f"batch_size {batch_size} is not a multiple of the {self.mesh.devices.size} devices")
    self.batch_size = batch_size
    self.variables = mesh_lib.replicate(variables, self.mesh)
    self._predict = make_predict_fn(model, self.mesh, num_select)

  def with_variables(self, variables) -> "JaxPredictor":
    """The same predictor (same compiled function) with other weights of the same shapes."""
    other = copy.copy(self)
    other.variables = mesh_lib.replicate(variables, self.mesh)
    return other

  def __call__(self, inputs: np.ndarray) -> DecodedBatch:
    inputs = np.asarray(inputs, np.float32)
    count = inputs.shape[0]
    if count > self.batch_size:
      raise ValueError(f"got {count} images, the predictor takes at most {self.batch_size}")
    if count < self.batch_size:  # keep one compiled shape
      padding = np.zeros((self.batch_size - count,) + inputs.shape[1:], inputs.dtype)
      inputs = np.concatenate([inputs, padding])
    outputs = mesh_lib.to_host(self._predict(self.variables, mesh_lib.shard_full_copy(inputs, self.mesh)))
    return {name: value[:count] for name, value in outputs.items()}

  def process_share(self, inputs: np.ndarray) -> DecodedBatch:
    """The outputs of this process's rows when every process passes only its own block of the batch.

    Args:
      inputs: [batch_size / P, H, W, 3] for P processes of the mesh, rows for this process's devices in order
        (training's validation, where each process loads its share of the frames; with one process this is
        the whole batch).
    """
    global_inputs = mesh_lib.shard_batch({"input": np.asarray(inputs, np.float32)}, self.mesh)["input"]
    outputs = mesh_lib.to_host(self._predict(self.variables, global_inputs))
    return distributed.local_rows(outputs, global_inputs)


def create_predictor(config, section: str) -> Predictor:
  """The predictor for `config.<section>` ("evaluate" or "inference"): its `onnx_file` if set, else its
  `checkpoint` (a checkpoint folder or a training results folder, whose latest checkpoint is used, or a TAO
  `.pth` / `.npz` state_dict converted on the fly; see `checkpoint.load_variables`) on the section's devices
  (`mesh.task_devices`: `num_gpus` / `gpu_ids`, as training), `dataset.batch_size` images per device.

  Raises:
    architecture.ArchitectureMismatchError: the checkpoint's weights do not fit the configured model.
  """
  settings = config[section]
  if settings.onnx_file:
    from centerpose_jax.inference.onnx_predictor import OnnxPredictor  # pylint: disable=g-import-not-at-top
    return OnnxPredictor(settings.onnx_file, encryption_key=config.encryption_key)
  devices = mesh_lib.task_devices(config, section)
  model = create_model(config)
  variables = checkpoint_lib.load_fitting_variables(settings.checkpoint, architecture.expected_shapes(model), config,
                                                    encryption_key=config.encryption_key, model=model)
  return JaxPredictor(model, variables, batch_size=int(config.dataset.batch_size) * len(devices),
                      num_select=config.inference.num_select, mesh=mesh_lib.create_mesh(devices))
