"""Batched network + decoder: one jitted forward that returns the decoded detections on the host.

`create_predictor(config, section)` builds it from a checkpoint (ours or a converted TAO one) or, when the
section's `onnx_file` is set, from an exported ONNX run by onnxruntime; both return the same seven arrays.
"""

from typing import Callable, Dict

import jax
import numpy as np

from centerpose_jax.inference.decode import decode

DecodedBatch = Dict[str, np.ndarray]


class JaxPredictor:
  """Network forward + `decode` under one `jax.jit`, fixed batch size (the last batch is padded).

  Call with `inputs` [N, H, W, 3] float32 (normalised BGR, N <= batch_size); returns the decoder's seven
  outputs as numpy arrays with leading axis N, in output-grid units.
  """

  def __init__(self, model, variables, *, batch_size: int, num_select: int = 100):
    self.batch_size = batch_size
    self._variables = jax.device_put(variables)

    def forward(variables, inputs):
      return decode(model.apply(variables, inputs, train=False), num_select=num_select)

    self._forward = jax.jit(forward)

  def __call__(self, inputs: np.ndarray) -> DecodedBatch:
    count = inputs.shape[0]
    if count > self.batch_size:
      raise ValueError(f"got {count} images, the predictor takes at most {self.batch_size}")
    if count < self.batch_size:  # keep one compiled shape
      padding = np.zeros((self.batch_size - count,) + inputs.shape[1:], inputs.dtype)
      inputs = np.concatenate([inputs, padding])
    outputs = jax.device_get(self._forward(self._variables, inputs))
    return {name: np.asarray(value)[:count] for name, value in outputs.items()}


def create_predictor(config, section: str) -> Callable[[np.ndarray], DecodedBatch]:
  """The predictor for `config.<section>` ("evaluate" or "inference"): its `onnx_file` if set, else its
  `checkpoint` (a checkpoint folder or a training results folder, whose latest checkpoint is used, or a TAO
  `.pth` / `.npz` state_dict converted on the fly; see `checkpoint.load_variables`).

  Raises:
    architecture.ArchitectureMismatchError: the checkpoint's weights do not fit the configured model.
  """
  settings = config[section]
  num_select = config.inference.num_select
  if settings.onnx_file:
    from centerpose_jax.export.runtime import OnnxPredictor  # pylint: disable=g-import-not-at-top
    return OnnxPredictor(settings.onnx_file, encryption_key=config.encryption_key)
  from centerpose_jax.models import create_model  # pylint: disable=g-import-not-at-top
  from centerpose_jax.models.architecture import expected_shapes  # pylint: disable=g-import-not-at-top
  from centerpose_jax.training.checkpoint import load_fitting_variables  # pylint: disable=g-import-not-at-top
  model = create_model(config)
  variables = load_fitting_variables(settings.checkpoint, expected_shapes(model), config,
                                     encryption_key=config.encryption_key, model=model)
  return JaxPredictor(model, variables, batch_size=config.dataset.batch_size, num_select=num_select)
