"""The whole loop for one step with the real (slim DLA34) network, as flax's examples/imagenet train_test.py, at
a non-square input; then evaluate, infer and export of the trained checkpoint at that input.

`dataset.input_res` is (256, 384) (width, height) on 240x320 frames (another aspect ratio: letterbox bars).
"""

import json
import pathlib

import jax
import numpy as np
import pytest

from centerpose_jax import config_validation
from centerpose_jax.data import synthetic
from centerpose_jax.tasks import evaluate as evaluate_task
from centerpose_jax.tasks.export import run as run_export
from centerpose_jax.tasks import infer as infer_task
from centerpose_jax import checkpoint
from centerpose_jax.training import reporting
from centerpose_jax.tasks import train as train_task
from standin import tiny_config

INPUT_SIZE, OUTPUT_SIZE = (256, 384), (64, 96)  # (width, height) pixels
FRAME_W, FRAME_H = 240, 320


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
  """(config, summary) of one training step with validation at the non-square input."""
  root = tmp_path_factory.mktemp("loop")
  synthetic.generate_dataset(root / "data", "cereal_box", num_train=2, num_val=2, seed=4, width=FRAME_W,
                             height=FRAME_H, max_objects=2)
  config = tiny_config(root / "data", root / "results", num_epochs=1, checkpoint_interval=1, validation_interval=1)
  config.dataset.input_res, config.dataset.output_res = INPUT_SIZE, OUTPUT_SIZE
  config_validation.validate(config, "train")
  return config, train_task.run(config)


def test_train_and_evaluate_one_step(one_step):
  config, summary = one_step
  train_dir = pathlib.Path(config.results_dir) / "train"
  assert summary["steps"] == 1 and summary["epochs"] == 1
  assert np.isfinite(summary["train_loss"]) and summary["train_loss"] > 0
  assert 0.0 <= summary["val_3DIoU"] <= 1.0 and "val_2DMPE" in summary
  # The checkpoint holds the final weights, its epoch and the data iterator state.
  assert summary["checkpoint"] == str(train_dir / "1")
  meta = checkpoint.read_meta(train_dir / "1")
  assert meta["epoch"] == 1 and meta["step"] == 1 and meta["data_iterator"]["epoch"] == 0
  json.dumps(meta)
  assert checkpoint.fingerprint(checkpoint.load_variables(train_dir)) == summary["fingerprint"]
  variables = checkpoint.load_variables(train_dir)
  assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(variables["params"]))
  # Feedback: TensorBoard events and TAO's status lines with the KPIs.
  assert list((train_dir / reporting.TENSORBOARD_SUBDIR).glob("events.out.tfevents.*"))
  records = reporting.read_status(train_dir)
  assert [r["status"] for r in records] == ["STARTED", "RUNNING", "SUCCESS"]
  assert set(records[-1]["kpi"]) == {"train_loss", "val_3DIoU", "val_2DMPE"}


def _records(folder):
  return {path.name: json.loads(path.read_text()) for path in sorted(pathlib.Path(folder).glob("*.json"))}


def test_then_infer_export_and_evaluate_at_the_same_non_square_input(one_step, tmp_path):
  config = one_step[0].copy_and_resolve_references()
  config.results_dir = str(tmp_path)
  config.dataset.test_data = config.dataset.inference_data = config.dataset.val_data
  config.evaluate.checkpoint = config.inference.checkpoint = config.export.checkpoint = str(
      pathlib.Path(one_step[0].results_dir) / "train")
  config.export.input_width, config.export.input_height = INPUT_SIZE
  config.export.num_select = config.inference.num_select
  config.export.onnx_file = str(tmp_path / "centerpose_256x384.onnx")
  config.inference.visualization_threshold = 0.0  # an untrained net scores low: keep its top detections
  for task in ("evaluate", "infer", "export"):
    assert config_validation.collect_problems(config, task) == [], task

  exported = run_export(config)  # compares the written file with JAX (decoder outputs) on a batch of inputs
  assert max(exported.errors.values()) <= 1e-4, exported.errors  # JAX equals the ONNX at 256x384
  # The JAX predictor at this input already ran in training's validation; infer and evaluate use the ONNX.
  config.inference.onnx_file = config.evaluate.onnx_file = config.export.onnx_file
  inferred = infer_task.run(config)
  assert inferred["images"] == 2 and inferred["cameras"] == {"image JSON": 2}  # the labels' cameras
  records = _records(inferred["output_dir"])
  assert len(records) == 2 and inferred["detections"] > 0
  for record in records.values():
    assert all(np.isfinite(obj["keypoints_2d"]).all() for obj in record["objects"])

  evaluated = evaluate_task.run(config)
  assert evaluated["frames"] == 2 and [row["width"] for row in evaluated["per_image"]] == [float(FRAME_W)] * 2
