"""Exported CenterPose ONNX files run by onnxruntime: the second implementation of `predictor.Predictor`.

`OnnxPredictor(path)(inputs)` takes the batch infer.py and evaluate.py build for the JAX model (NHWC,
normalised BGR) and returns the same seven decoded arrays `predict.predict` returns. The graph's interface
(TAO's input and output names) is defined here and written by the export (`tasks/export.py`).
"""

from typing import Dict, Optional, Sequence

import numpy as np
import onnxruntime as ort

from centerpose_jax import encryption

# TAO's graph interface (reference-behavior §7): input name and output names in TAO's order.
INPUT_NAME = "input"
OUTPUT_NAMES = ("bboxes", "scores", "kps", "clses", "obj_scale", "kps_displacement_mean", "kps_heatmap_mean")
PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


def default_providers():
  """onnxruntime execution providers to use: CUDA when this onnxruntime build has it, then the CPU."""
  available = ort.get_available_providers()
  return [provider for provider in PREFERRED_PROVIDERS if provider in available]


class OnnxPredictor:
  """An exported CenterPose model (plain or encrypted ONNX file) in an onnxruntime session.

  Attributes:
    batch_size: the model's static batch size, or None when its batch axis is dynamic.
    input_height, input_width: the input size the model was exported for (pixels).
    metadata: the model's metadata_props (category, normalisation, source checkpoint, ...).
  """

  def __init__(self, path, encryption_key: Optional[encryption.Key] = None,
               providers: Optional[Sequence[str]] = None):
    """Loads `path`, decrypting it with `encryption_key` when it is encrypted.

    Raises:
      ValueError: when the file is not a CenterPose export (input or output names differ from TAO's).
      encryption.EncryptionError: when it is encrypted and the key is missing or wrong.
    """
    self.path = str(path)
    self._session = ort.InferenceSession(encryption.read_file(path, encryption_key),
                                         providers=list(providers or default_providers()))
    inputs = self._session.get_inputs()
    outputs = [output.name for output in self._session.get_outputs()]
    if [i.name for i in inputs] != [INPUT_NAME] or sorted(outputs) != sorted(OUTPUT_NAMES):
      raise ValueError(f"{path}: not a CenterPose export; it has inputs {[i.name for i in inputs]} and outputs "
                       f"{outputs}, expected [{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}")
    batch, channels, self.input_height, self.input_width = inputs[0].shape
    self.batch_size = batch if isinstance(batch, int) else None
    self._channels = channels
    self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)

  def _run(self, batch_nchw: np.ndarray) -> Sequence[np.ndarray]:
    return self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch_nchw})

  def __call__(self, inputs: np.ndarray) -> Dict[str, np.ndarray]:
    """Decoded detections of a batch.

    Args:
      inputs: [N, H, W, 3] float32, normalised BGR as for the JAX model (NHWC; transposed here to the
        graph's NCHW), H and W the exported input size. Any N: a static-batch model runs it in chunks of
        its batch size, the last one zero-padded.

    Returns:
      {name: [N, K, ...] float32} for every name of OUTPUT_NAMES, in output-grid pixels.
    """
    inputs = np.asarray(inputs, dtype=np.float32)
    expected = (self.input_height, self.input_width, self._channels)
    if inputs.ndim != 4 or inputs.shape[1:] != expected:
      raise ValueError(f"{self.path} takes [N, {', '.join(map(str, expected))}] inputs (NHWC), got "
                       f"{inputs.shape}; the exported input size must equal the preprocessing size")
    batch_nchw = np.ascontiguousarray(inputs.transpose(0, 3, 1, 2))
    count = batch_nchw.shape[0]
    if self.batch_size is None:
      chunks = [self._run(batch_nchw)]
    else:
      padded = -count % self.batch_size
      batch_nchw = np.concatenate([batch_nchw, np.zeros((padded,) + batch_nchw.shape[1:], np.float32)])
      chunks = [self._run(batch_nchw[start:start + self.batch_size])
                for start in range(0, batch_nchw.shape[0], self.batch_size)]
    return {name: np.concatenate([chunk[i] for chunk in chunks])[:count] for i, name in enumerate(OUTPUT_NAMES)}
