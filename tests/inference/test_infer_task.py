"""infer.py's library side (centerpose_jax/inference/run.py) end to end on the real Objectron frames.

A quarter-width DLA34 with random weights at the scale of a trained net, saved as a checkpoint folder, runs
at a 128-pixel input over the six real fixture frames (600x800) through JAX and through its ONNX export in
onnxruntime (`inference.onnx_file`), and over a short video made from one frame.
"""

import json
import pathlib

import cv2
import numpy as np
import pytest

from centerpose_jax.export import run_export
from centerpose_jax.inference import run
from centerpose_jax.models import create_model
from centerpose_jax.testing.variables import random_variables
from configs import default
from helpers import save_checkpoint

INPUT = 128
# The CenterPose demo's default intrinsics of these frames (fixtures/real/README.md), pixels.
FX = FY = 663.0287679036459
CX, CY = 300.2775065104167, 395.00066121419275
IMAGE_H, IMAGE_W = 800, 600
VIDEO_FRAMES = 3
# The random net scores nearly every grid cell 0.8-0.9; this keeps a few detections per frame.
THRESHOLD = 0.855
# Shape of every field of a detection with a pose (reference-behavior §5.5), plus our score and bbox.
OBJECT_SHAPES = {"id": (), "score": (), "bbox": (4,), "relative_scale": (3,), "keypoints_2d": (8, 2),
                 "location": (3,), "quaternion_xyzw": (4,), "projected_keypoints_2d": (9, 2),
                 "keypoints_3d": (9, 3)}
NUMERIC_KEYS = tuple(key for key in OBJECT_SHAPES if key != "id")
# Fields read off the network's outputs, and the PnP pose fields.
NETWORK_KEYS = ("score", "bbox", "keypoints_2d", "relative_scale")
POSE_KEYS = ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d")
# The random net's keypoints are no cuboid's projection, so PnP fits poorly and amplifies the ~1e-6 relative
# ONNX-JAX differences of the keypoints: up to ~4e-3 for poses at least this far from the camera (relative-scale
# units), up to ~0.2 for the degenerate fits that put the object at the camera, whose poses are not compared.
NEAR_CAMERA = 0.1


def small_config(checkpoint, data, results_dir):
  config = default.get_config()
  config.dataset.category = "chair"
  config.dataset.input_res, config.dataset.output_res = INPUT, INPUT // 4
  config.dataset.batch_size = 4  # six frames: a full batch, then one padded to the compiled size
  config.dataset.inference_data = str(data)
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = 32
  config.results_dir = str(results_dir)
  config.inference.checkpoint = str(checkpoint)
  config.inference.focal_length_x, config.inference.focal_length_y = FX, FY
  config.inference.principle_point_x, config.inference.principle_point_y = CX, CY
  config.inference.visualization_threshold = THRESHOLD
  config.export.checkpoint = str(checkpoint)
  config.export.input_height = config.export.input_width = INPUT
  return config


@pytest.fixture(scope="module")
def frames_dir(real_fixtures):
  return real_fixtures / "objectron_frames"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  variables = random_variables(create_model(small_config("", "", "")), (INPUT, INPUT))
  return save_checkpoint(tmp_path_factory.mktemp("weights") / "checkpoint", variables)


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory):
  """The checkpoint exported by `run_export` at the inference input size."""
  config = small_config(checkpoint, "", "")
  config.export.onnx_file = str(tmp_path_factory.mktemp("onnx") / "centerpose.onnx")
  return str(run_export(config).path)


def _infer(config):
  """(summary, output folder) of `infer(config)`."""
  summary = run.infer(config)
  return summary, pathlib.Path(summary["output_dir"])


@pytest.fixture(scope="module")
def jax_run(checkpoint, frames_dir, tmp_path_factory):
  """`_infer` with the JAX model over the real frames."""
  return _infer(small_config(checkpoint, frames_dir, tmp_path_factory.mktemp("jax")))


def _records(folder):
  """{file name: parsed JSON} of the per-image JSON files in `folder`."""
  return {path.name: json.loads(path.read_text()) for path in sorted(folder.glob("*.json"))}


def _check_record(record, image_name):
  """Asserts TAO's schema (§5.5) plus score and bbox, with a pose for every object; returns the object count."""
  assert record["image_name"] == image_name
  for k, obj in enumerate(record["objects"]):
    assert obj["id"] == f"object_{k}"
    assert {key: np.shape(value) for key, value in obj.items()} == OBJECT_SHAPES
    assert all(np.isfinite(obj[key]).all() for key in NUMERIC_KEYS)
    assert obj["score"] > THRESHOLD and obj["location"][2] > 0  # kept, in front of the camera (OpenCV frame)
    assert np.linalg.norm(obj["quaternion_xyzw"]) == pytest.approx(1.0, abs=1e-6)
  return len(record["objects"])


def _relative_difference(value, reference) -> float:
  """max |value - reference| / max |reference| of two same-shaped numbers or arrays."""
  reference = np.asarray(reference, np.float64)
  return float(np.max(np.abs(np.asarray(value) - reference)) / max(np.max(np.abs(reference)), 1e-12))


def test_infer_writes_a_json_and_a_drawn_image_per_real_frame(jax_run, frames_dir):
  summary, out = jax_run
  images = sorted(frames_dir.glob("*.png"))
  records = _records(out)
  assert sorted(records) == [f"{path.stem}.json" for path in images]
  detections = sum(_check_record(records[f"{path.stem}.json"], path.name) for path in images)
  assert detections > 0  # the pose fields above were checked on real detections
  for path in images:
    drawn = cv2.imread(str(out / f"{path.stem}.jpg"), cv2.IMREAD_COLOR)
    assert drawn is not None and drawn.shape == (IMAGE_H, IMAGE_W, 3)
  assert (summary["images"], summary["detections"], summary["unreadable"]) == (len(images), detections, 0)
  assert summary["images_per_second"] > 0


def test_infer_with_the_exported_onnx_writes_the_same_results(jax_run, onnx_file, checkpoint, frames_dir,
                                                              tmp_path):
  config = small_config(checkpoint, frames_dir, tmp_path)
  config.inference.onnx_file = onnx_file
  summary, out = _infer(config)

  jax_summary, jax_out = jax_run
  from_onnx, from_jax = _records(out), _records(jax_out)
  assert sorted(from_onnx) == sorted(from_jax)
  assert (summary["images"], summary["detections"]) == (jax_summary["images"], jax_summary["detections"])
  poses_compared = 0
  for name, record in from_jax.items():
    onnx_objects = from_onnx[name]["objects"]
    assert len(onnx_objects) == len(record["objects"]), name
    matched = set()
    for obj in record["objects"]:
      # Equal-scored detections (e.g. in the letterbox bars) may come in either order: compare each JAX
      # detection with the ONNX one of the nearest box.
      match = min(onnx_objects, key=lambda other, box=obj["bbox"]: _relative_difference(other["bbox"], box))
      matched.add(match["id"])
      for key in NETWORK_KEYS:
        assert _relative_difference(match[key], obj[key]) < 1e-4, (name, obj["id"], key)
      if np.linalg.norm(obj["location"]) >= NEAR_CAMERA:
        poses_compared += 1
        for key in POSE_KEYS:
          assert _relative_difference(match[key], obj[key]) < 1e-2, (name, obj["id"], key)
    assert len(matched) == len(onnx_objects), name
  assert poses_compared > 0


def test_infer_on_a_video_writes_jsonl_records_and_an_annotated_video(onnx_file, checkpoint, frames_dir,
                                                                      tmp_path):
  frame = cv2.imread(str(frames_dir / "chair_00000.png"), cv2.IMREAD_COLOR)
  video = tmp_path / "clip.mp4"
  writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (IMAGE_W, IMAGE_H))
  for _ in range(VIDEO_FRAMES):
    writer.write(frame)
  writer.release()
  config = small_config(checkpoint, video, tmp_path / "results")
  config.inference.onnx_file = onnx_file  # the video path does not depend on the predictor; ONNX needs no compile

  summary, out = _infer(config)

  records = [json.loads(line) for line in (out / "clip.jsonl").read_text().splitlines()]
  assert [record.pop("frame") for record in records] == list(range(VIDEO_FRAMES))
  detections = sum(_check_record(record, f"clip.mp4#{i:06d}") for i, record in enumerate(records))
  assert (summary["images"], summary["detections"]) == (VIDEO_FRAMES, detections)
  annotated = cv2.VideoCapture(str(out / "clip.mp4"))
  assert int(annotated.get(cv2.CAP_PROP_FRAME_COUNT)) == VIDEO_FRAMES
  ok, first = annotated.read()
  annotated.release()
  assert ok and first.shape == (IMAGE_H, IMAGE_W, 3)


def test_evaluate_with_the_exported_onnx_gives_the_checkpoints_metrics(onnx_file, checkpoint, tmp_path):
  """evaluate.py's `evaluate.onnx_file` path (the same predictor switch as infer.py's) on labelled frames."""
  from centerpose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from centerpose_jax.evaluation import run as evaluation_run  # pylint: disable=g-import-not-at-top
  synthetic.generate_dataset(tmp_path / "data", "chair", num_train=0, num_val=4, seed=5, width=120, height=160)

  def evaluate(name, **section):
    config = small_config(checkpoint, "", tmp_path / name)
    config.dataset.test_data = str(tmp_path / "data" / "val")
    config.dataset.workers = 0
    config.evaluate.checkpoint = str(checkpoint)
    config.evaluate.update(section)
    return evaluation_run.evaluate(config)

  from_jax, from_onnx = evaluate("jax"), evaluate("onnx", onnx_file=onnx_file)
  assert [row["image_id"] for row in from_onnx["per_image"]] == [row["image_id"] for row in from_jax["per_image"]]
  compared = 0
  for jax_row, onnx_row in zip(from_jax["per_image"], from_onnx["per_image"]):
    jax_scores = sorted(p["score"] for p in jax_row["predictions"])
    onnx_scores = sorted(p["score"] for p in onnx_row["predictions"])
    # As in the infer test, PnP on this random net's keypoints (no cuboid's projection) can flip a pose
    # behind the camera for ~1e-6 input differences, dropping that detection in one run only.
    shorter, longer = sorted([jax_scores, onnx_scores], key=len)
    assert len(longer) - len(shorter) <= 1
    for score in shorter:
      assert min(abs(score - other) for other in longer) < 1e-4
    compared += len(shorter)
  assert compared > 0
