"""Tests of export.py's library side (centerpose_jax/tasks/export.py) on the real CenterPose network.

DLA34 with TAO's structure (all levels, DLAUp/IDAUp, ConvGRU, seven heads, decoder) at a quarter of its
width, random weights, exported by `run_export` from a checkpoint folder at a non-square 96x128 input.
"""

import contextlib
import io
import json
import pathlib

import jax
import numpy as np
import onnx
import pytest

from centerpose_jax.export import onnx_export
from centerpose_jax.tasks.export import run as run_export
from centerpose_jax.tasks import export as task
from centerpose_jax.inference.predictor import JaxPredictor
from centerpose_jax.inference.predictor import create_predictor
from centerpose_jax.models import create_model
from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax import config as config_lib
from centerpose_jax.testing.variables import random_variables
from configs import default
from helpers import save_checkpoint

HEIGHT, WIDTH = 96, 128
NUM_SELECT = 100
WIDTHS = {"bboxes": 4, "scores": 1, "kps": 16, "clses": 1, "obj_scale": 3, "kps_displacement_mean": 16,
          "kps_heatmap_mean": 16}


def small_config():
  config = default.get_config()
  config.dataset.category = "shoe"
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = 64
  config.export.input_height, config.export.input_width = HEIGHT, WIDTH
  return config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(config, variables, ExportResult, printed text) of one export through `run_export`, to the default path
  (export.onnx_file unset, export.results_dir set) with export.verbose."""
  folder = tmp_path_factory.mktemp("export")
  config = small_config()
  variables = random_variables(create_model(config), (HEIGHT, WIDTH))
  config.export.checkpoint = str(save_checkpoint(folder / "checkpoint", variables))
  config.export.results_dir = str(folder / "exported")
  config.export.verbose = True
  printed = io.StringIO()
  with contextlib.redirect_stdout(printed):
    result = run_export(config)
  return config, variables, result, printed.getvalue()


def _dims(value):
  return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_export_has_taos_interface_and_passes_the_checker(exported):
  config, variables, result, _ = exported
  assert max(result.errors.values()) <= onnx_export.DEFAULT_TOLERANCE, result.errors
  model = onnx.load(result.path)
  onnx.checker.check_model(model, full_check=True)
  assert [(i.name, _dims(i)) for i in model.graph.input] == [("input", ["batch_size", 3, HEIGHT, WIDTH])]
  assert [(o.name, _dims(o)) for o in model.graph.output] == [
      (name, ["batch_size", NUM_SELECT, width]) for name, width in WIDTHS.items()]
  assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
  assert [o.version for o in model.opset_import if o.domain == ""] == [16]
  ops = {node.op_type for node in model.graph.node}
  assert "ConvTranspose" in ops and "TopK" in ops  # the grouped-conv up layers and the decoder are inside
  assert "Conv" in ops and not ops & {"MatMul", "Einsum"}  # XLA's convolutions, none of the CPU formulations
  assert "BatchNormalization" not in ops  # folded into the convs

  metadata = {p.key: p.value for p in model.metadata_props}
  assert metadata["category"] == "shoe" and metadata["backbone"] == "DLA34"
  assert (metadata["input_height"], metadata["input_width"]) == (str(HEIGHT), str(WIDTH))
  assert metadata["channel_order"] == "BGR" and metadata["input_layout"] == "NCHW"
  assert json.loads(metadata["mean_bgr"]) == list(config_lib.BGR_MEAN)
  assert json.loads(metadata["std_bgr"]) == list(config_lib.BGR_STD)
  assert metadata["checkpoint"].endswith("checkpoint")
  assert metadata["checkpoint_fingerprint"] == checkpoint_lib.fingerprint(variables)


def test_onnx_predictor_matches_the_jax_predictor(exported):
  config, variables, result, _ = exported
  config.inference.onnx_file = str(result.path)
  onnx_predictor = create_predictor(config, "inference")  # what infer.py gets with inference.onnx_file
  assert onnx_predictor.metadata["category"] == "shoe"
  images = np.random.default_rng(7).standard_normal((3, HEIGHT, WIDTH, 3)).astype(np.float32)
  from_onnx = onnx_predictor(images)
  from_jax = JaxPredictor(create_model(config), variables, batch_size=3, num_select=NUM_SELECT)(images)
  assert {name: value.shape for name, value in from_onnx.items()} == {
      name: value.shape for name, value in from_jax.items()}
  errors = task.decoded_output_errors(from_onnx, from_jax)
  assert max(errors.values()) <= onnx_export.DEFAULT_TOLERANCE, errors
  assert from_onnx["scores"].max() > 0.1  # real detections, not an all-empty output


def test_results_dir_and_verbose_take_effect(exported):
  config, _, result, printed = exported
  assert result.path == pathlib.Path(config.export.results_dir) / "centerpose.onnx"  # <results_dir>/<model_name>
  summary = task.graph_summary(onnx.load(result.path))
  assert summary in printed  # export.verbose
  assert "inputs: input [batch_size, 3, 96, 128]" in summary and "ConvTranspose" in summary
  assert f"outputs: bboxes [batch_size, {NUM_SELECT}, 4]" in summary


def test_export_device_follows_on_cpu_and_gpu_id():
  export = small_config().export
  assert task.export_device(export) == jax.devices()[0]
  export.on_cpu = True
  assert task.export_device(export).platform == "cpu"
  export.on_cpu, export.gpu_id = False, len(jax.devices())
  with pytest.raises(onnx_export.ExportSettingsError, match=f"export.gpu_id={len(jax.devices())}"):
    task.export_device(export)


def test_input_channel_other_than_3_is_refused_before_loading(tmp_path):
  config = small_config()
  config.export.input_channel = 4
  config.export.checkpoint = str(tmp_path / "missing")
  config.export.onnx_file = str(tmp_path / "model.onnx")
  with pytest.raises(onnx_export.ExportSettingsError, match="input_channel=4: CenterPose takes 3-channel BGR"):
    run_export(config)
  assert not (tmp_path / "model.onnx").exists()


def _decoded(scores, bboxes):
  """Decoder-shaped outputs for one image: the given scores and boxes, every other output derived from them."""
  scores = np.asarray(scores, np.float32)[None, :, None]
  bboxes = np.asarray(bboxes, np.float32)[None]
  outputs = {name: np.repeat(bboxes[..., :1], width, axis=-1) * 2 for name, width in WIDTHS.items()}
  outputs.update(scores=scores, bboxes=bboxes)
  return outputs


def test_decoded_output_errors_matches_only_near_tied_detections():
  boxes = np.arange(16, dtype=np.float32).reshape(4, 4)
  reference = _decoded([0.9, 0.5, 0.5 - 5e-6, 0.1], boxes)
  swapped_tie = _decoded([0.9, 0.5 - 1e-7, 0.5, 0.1], boxes[[0, 2, 1, 3]])
  errors = task.decoded_output_errors(swapped_tie, reference)
  assert max(errors.values()) == pytest.approx(5.1e-6, abs=2e-7)  # rows 1 and 2 matched up
  swapped_distinct = _decoded([0.5, 0.9, 0.5, 0.1], boxes[[1, 0, 2, 3]])
  assert task.decoded_output_errors(swapped_distinct, reference)["bboxes"] == 4.0
  # The last group may tie with detections past the top K: only its scores are compared.
  other_last = _decoded([0.9, 0.5, 0.5 - 5e-6, 0.1], np.concatenate([boxes[:3], boxes[:1] + 100]))
  assert task.decoded_output_errors(other_last, reference)["bboxes"] == 0.0
  shorter = {name: value[:, :3] for name, value in reference.items()}
  assert task.decoded_output_errors(shorter, reference)["scores"] == float("inf")
