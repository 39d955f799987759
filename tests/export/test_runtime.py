"""Tests of OnnxPredictor (centerpose_jax/export/runtime.py) on small graphs with CenterPose's interface.

The graphs compute each output from per-image channel means, so batching, padding, chunking and the
NHWC -> NCHW transpose all show in the values. The real CenterPose export is tested in
test_centerpose_export.py.
"""

import jax.numpy as jnp
import numpy as np
import pytest
from jax2onnx import to_onnx

from centerpose_jax import encryption
from centerpose_jax.inference.onnx_predictor import OUTPUT_NAMES
from centerpose_jax.inference.onnx_predictor import OnnxPredictor

HEIGHT, WIDTH = 32, 64
NUM_SELECT = 5
WIDTHS = {"bboxes": 4, "scores": 1, "kps": 16, "clses": 1, "obj_scale": 3, "kps_displacement_mean": 16,
          "kps_heatmap_mean": 16}


def expected_outputs(images_nhwc):
  """What the fake graph returns for NHWC images: output o, detection k, column j = mean_c(o) * (k + j + 1)
  with c = o mod 3 the channel of output o."""
  channel_means = images_nhwc.mean(axis=(1, 2))  # [N, 3]
  outputs = {}
  for index, name in enumerate(OUTPUT_NAMES):
    ramp = np.arange(NUM_SELECT)[:, None] + np.arange(WIDTHS[name])[None, :] + 1.0
    outputs[name] = channel_means[:, index % 3, None, None] * ramp
  return outputs


def fake_centerpose(x_nchw):
  channel_means = jnp.mean(x_nchw, axis=(2, 3))
  outputs = []
  for index, name in enumerate(OUTPUT_NAMES):
    ramp = jnp.arange(NUM_SELECT)[:, None] + jnp.arange(WIDTHS[name])[None, :] + 1.0
    outputs.append(channel_means[:, index % 3, None, None] * ramp)
  return tuple(outputs)


def write_fake_model(path, batch, output_names=OUTPUT_NAMES, key=None):
  model = to_onnx(fake_centerpose, [(batch, 3, HEIGHT, WIDTH)], opset=18, input_names=["input"],
                  output_names=list(output_names))
  encryption.write_file(path, model.SerializeToString(), key)
  return path


def images(count):
  return np.random.default_rng(count).standard_normal((count, HEIGHT, WIDTH, 3)).astype(np.float32)


@pytest.mark.parametrize("batch, count", [("batch_size", 3), ("batch_size", 1), (2, 5), (2, 2), (4, 1)])
def test_outputs_for_any_count_of_images(tmp_path, batch, count):
  predictor = OnnxPredictor(write_fake_model(tmp_path / "model.onnx", batch))
  assert predictor.batch_size == (None if batch == "batch_size" else batch)
  assert (predictor.input_height, predictor.input_width) == (HEIGHT, WIDTH)
  inputs = images(count)
  outputs = predictor(inputs)
  expected = expected_outputs(inputs)
  assert list(outputs) == list(OUTPUT_NAMES)
  for name in OUTPUT_NAMES:
    assert outputs[name].shape == (count, NUM_SELECT, WIDTHS[name]) and outputs[name].dtype == np.float32
    np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_wrong_input_size_is_a_clear_error(tmp_path):
  predictor = OnnxPredictor(write_fake_model(tmp_path / "model.onnx", "batch_size"))
  with pytest.raises(ValueError, match=r"takes \[N, 32, 64, 3\] inputs \(NHWC\), got \(1, 64, 32, 3\)"):
    predictor(np.zeros((1, WIDTH, HEIGHT, 3), np.float32))


def test_a_graph_without_centerpose_outputs_is_refused(tmp_path):
  names = ("heatmap",) + OUTPUT_NAMES[1:]
  with pytest.raises(ValueError, match="not a CenterPose export"):
    OnnxPredictor(write_fake_model(tmp_path / "model.onnx", 1, output_names=names))


def test_encrypted_model_runs_with_the_key_only(tmp_path):
  path = write_fake_model(tmp_path / "model.onnx", "batch_size", key="deploy key")
  inputs = images(2)
  outputs = OnnxPredictor(path, encryption_key="deploy key")(inputs)
  np.testing.assert_allclose(outputs["kps"], expected_outputs(inputs)["kps"], rtol=1e-5, atol=1e-6)
  with pytest.raises(encryption.WrongKeyError):
    OnnxPredictor(path, encryption_key="other key")
  with pytest.raises(encryption.EncryptionError, match="is encrypted; set encryption_key"):
    OnnxPredictor(path)


def test_plain_model_loads_with_a_key_set(tmp_path):
  predictor = OnnxPredictor(write_fake_model(tmp_path / "model.onnx", 1), encryption_key="unused key")
  assert predictor(images(1))["scores"].shape == (1, NUM_SELECT, 1)
