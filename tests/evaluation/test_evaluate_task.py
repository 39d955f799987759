"""evaluate.py's library side: per-batch scoring shared with validation, and the whole task on a small dataset."""

import csv
import json
import shutil

import jax
import numpy as np
import pytest

from centerpose_jax.data import loader
from centerpose_jax.data import synthetic
from centerpose_jax.evaluation import Evaluator
from centerpose_jax.evaluation import run
from centerpose_jax.evaluation.report import format_report
from centerpose_jax.models import create_model
from centerpose_jax.training import state as state_lib
from configs import default
from helpers import oracle_decoded
from helpers import save_checkpoint

INPUT = 64


def small_config(data_dir, results_dir):
  config = default.get_config()
  config.dataset.category = "cereal_box"
  config.dataset.input_res, config.dataset.output_res = INPUT, INPUT // 4
  config.dataset.batch_size = 2
  config.dataset.workers = 0
  config.dataset.test_data = str(data_dir / "val")
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = 32
  config.evaluate.opencv = False
  config.results_dir = str(results_dir)
  return config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  folder = tmp_path_factory.mktemp("synthetic")
  synthetic.generate_dataset(folder, "cereal_box", num_train=0, num_val=5, seed=3, width=120, height=160)
  return folder


def test_score_batch_gives_full_ap_for_ground_truth_detections(dataset, tmp_path):
  config = small_config(dataset, tmp_path)
  source = loader.open_source(config.dataset.test_data)
  evaluator = Evaluator.from_config(config)
  frames = 0
  for batch in loader.iterate_eval_batches(source, config.dataset, with_targets=False, shard_index=0,
                                           shard_count=1, workers=0):
    detections = run.score_batch(evaluator, oracle_decoded(batch, INPUT // 4), batch, config)
    assert len(detections) == len(batch["image_path"])
    for weight, annotation, found in zip(batch["sample_weight"], batch["annotation"], detections):
      expected = len(annotation["objects"]) if weight else 0
      assert len(found) == expected  # padding samples are skipped, every labelled object is detected
    frames += int(np.count_nonzero(batch["sample_weight"]))
  results = evaluator.finalize()
  assert frames == len(source) == len(results["per_image"])
  assert results["headline"]["3DIoU_AP@0.5"] > 0.95
  assert results["headline"]["2DMPE"] < 0.01


def test_evaluate_task_writes_the_report(dataset, tmp_path):
  config = small_config(dataset, tmp_path / "results")
  variables = state_lib.init_variables(create_model(config), jax.random.PRNGKey(0), (1, INPUT, INPUT, 3))
  config.evaluate.checkpoint = str(save_checkpoint(tmp_path / "ckpt", variables))

  results = run.evaluate(config)

  out = tmp_path / "results" / "evaluate"
  assert results["output_dir"] == str(out) and results["frames"] == 5
  names = {path.name for path in out.iterdir()}
  assert {"metrics.json", "report.txt", "per_image.csv", "ap_iou.png"} <= names
  written = json.loads((out / "metrics.json").read_text())
  assert written["headline"]["3DIoU_AP@0.5"] == results["headline"]["3DIoU_AP@0.5"]
  with open(out / "per_image.csv", newline="") as stream:
    images = {row["image_id"] for row in csv.DictReader(stream)}
  assert len(images) == 5


def test_labels_without_ar_data_visibility_or_image_size_are_evaluated(dataset, tmp_path):
  """Custom / Isaac Sim labels: the metric scale then comes from the ground-truth box, counted in the report."""
  custom = tmp_path / "custom" / "val"
  shutil.copytree(dataset / "val", custom)
  labels = sorted(custom.glob("*.json"))
  for index, path in enumerate(labels):
    label = json.loads(path.read_text())
    if index >= 2:  # frames 0 and 1 keep their AR_data
      del label["AR_data"]
    del label["camera_data"]["width"], label["camera_data"]["height"]
    for obj in label["objects"]:
      del obj["visibility"]
    path.write_text(json.dumps(label))
  config = small_config(tmp_path / "custom", tmp_path / "results")
  source = loader.check_dataset(loader.open_source(config.dataset.test_data), config.dataset,
                                needs_evaluation=True).source  # what evaluate.py checks: nothing is missing
  evaluator = Evaluator.from_config(config)
  for batch in loader.iterate_eval_batches(source, config.dataset, with_targets=False, shard_index=0,
                                           shard_count=1, workers=0):
    run.score_batch(evaluator, oracle_decoded(batch, INPUT // 4), batch, config)
  results = evaluator.finalize()
  assert results["scale_sources"] == {"ar_plane": 2, "gt_height": len(labels) - 2}
  assert [row["width"] for row in results["per_image"]] == [120.0] * len(labels)  # the decoded image's size
  assert results["headline"]["3DIoU_AP@0.5"] > 0.95 and results["headline"]["2DMPE"] < 0.01
  report = format_report(results)
  assert "metric scale: from the AR ground plane (AR_data) in 2 frames, from the ground-truth box height " \
         f"(no AR_data) in {len(labels) - 2} frames" in report
