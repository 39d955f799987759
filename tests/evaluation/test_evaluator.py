"""Evaluator parity with TAO (fixtures/tao_reference/evaluator) and the corrected default mode."""

import copy
import dataclasses
import json

import numpy as np
import pytest

from centerpose_jax.evaluation import Evaluator
from centerpose_jax.testing.detections import from_tao_predictions
from configs import default

# Fixture names of TAO's mean errors and per-prediction values -> ours.
_MEANS = {"mean_error_scale": "scale", "mean_error_2d": "pixel", "mean_3d_iou": "iou",
          "mean_azimuth_error": "azimuth", "mean_polar_error": "polar"}
_VALUES = {"plane_scale": "scale_factor", "pixel_error": "pixel", "azimuth_error": "azimuth",
           "polar_error": "polar", "iou": "iou", "add": "add", "adds": "adds", "scale_error": "scale"}


@pytest.fixture(scope="module")
def frames(tao_reference):
  """[(frame name, predictions, annotation)] in file order."""
  folder = tao_reference / "evaluator"
  entries = json.loads((folder / "predictions.json").read_text())
  return [(entry["frame"], entry["predictions"], json.loads((folder / entry["gt_json"]).read_text()))
          for entry in entries]


def _evaluate(frames, names=None, **settings):
  evaluator = Evaluator(**settings)
  for name, predictions, annotation in frames:
    if names is None or name in names:
      evaluator.add_frame(from_tao_predictions(predictions), annotation, image_id=name)
  return evaluator.finalize()


def _frame(frames, name):
  return next((predictions, annotation) for frame_name, predictions, annotation in frames if frame_name == name)


@pytest.mark.parametrize("result_file", ["results_all_sym1.json", "results_bottle_sym12.json",
                                         "results_bottle_sym1.json"])
def test_tao_compatible_mode_reproduces_tao(frames, tao_reference, result_file):
  expected = json.loads((tao_reference / "evaluator" / result_file).read_text())
  found = _evaluate(frames, expected["frames"], num_symmetry=expected["eval_num_symmetry"], tao_compatible=True,
                    use_absolute_scale=expected["use_absolute_scale"])
  assert found["headline"]["3DIoU_AP@0.5"] == pytest.approx(expected["headline"]["ap_3d_iou_at_0p5"], abs=1e-6)
  assert found["headline"]["2DMPE"] == pytest.approx(expected["headline"]["mean_2d_error_mpe"], abs=1e-6)
  assert found["num_matched"] == expected["matched"]
  assert found["num_gt"] == expected["total_instances"]["iou"]
  for tao_name, name in _MEANS.items():
    assert found["means"][name] == pytest.approx(expected["means"][tao_name], abs=1e-6), tao_name
  for name, values in expected["ap"].items():
    np.testing.assert_allclose(found["ap"][name], values, rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(found["thresholds"][name], expected["thresholds"][name], rtol=0, atol=1e-12)
  assert [row["image_id"] for row in found["per_image"]] == [frame["frame"] for frame in expected["per_frame"]]
  for row, frame in zip(found["per_image"], expected["per_frame"]):
    assert row["evaluated"] != frame["skipped_as_negative"], frame["frame"]
    assert len(row["predictions"]) == len(frame["per_prediction"]), frame["frame"]
    for record, reference in zip(row["predictions"], frame["per_prediction"]):
      label = f"{frame['frame']} prediction {reference['pred']}"
      assert record["matched_gt"] == reference["matched_gt"], label
      for tao_name, name in _VALUES.items():
        if tao_name in reference:
          assert record[name] == pytest.approx(reference[tao_name], abs=1e-6), f"{label} {tao_name}"


def test_tao_quirks_are_visible(frames):
  """The fixture's quirks: AP 1.4 from duplicate matches, skipped frames, unmatched low-visibility preds."""
  bottles = _evaluate(frames, {"f03_bottle", "f07_bottle", "f11_bottle", "f15_bottle", "f19_bottle"},
                      num_symmetry=12, tao_compatible=True)
  assert bottles["headline"]["3DIoU_AP@0.5"] == pytest.approx(1.4, abs=1e-6)
  everything = _evaluate(frames, tao_compatible=True)
  skipped = {row["image_id"] for row in everything["per_image"] if not row["evaluated"]}
  assert skipped == {"f08_synth", "f17_synth"}


def test_default_mode_matches_each_ground_truth_once(frames):
  results = _evaluate(frames)
  for name in results["ap"]:
    assert max(results["ap"][name]) <= 1.0 + 1e-12, name
  bottles = _evaluate(frames, {"f03_bottle", "f07_bottle", "f11_bottle", "f15_bottle", "f19_bottle"},
                      num_symmetry=12)
  assert bottles["headline"]["3DIoU_AP@0.5"] <= 1.0
  assert results["num_matched"] <= results["num_gt"]
  statuses = set()
  for row in results["per_image"]:
    matched = [p["matched_gt"] for p in row["predictions"] if p["status"] == "matched"]
    assert len(matched) == len(set(matched)), row["image_id"]
    statuses.update(p["status"] for p in row["predictions"])
  assert {"matched", "duplicate", "ignored"} <= statuses
  # f04 has two predictions for ground truth 0: the higher score keeps it, the other is a false positive.
  f04 = next(row for row in results["per_image"] if row["image_id"] == "f04_synth")
  duplicates = [p for p in f04["predictions"] if p["status"] == "duplicate"]
  assert len(duplicates) == 1
  keeper = next(p for p in f04["predictions"] if p["status"] == "matched" and p["matched_gt"] == 0)
  assert keeper["score"] > duplicates[0]["score"]


def test_default_mode_counts_false_positives_where_tao_skips_the_frame(frames):
  predictions, annotation = _frame(frames, "f08_synth")  # its only object's centre is outside the image
  # The prediction sits on that object: ignored, the frame adds nothing.
  on_object = _evaluate([("f08", predictions, annotation)])
  assert on_object["per_image"][0]["evaluated"] and on_object["num_gt"] == 0
  assert on_object["per_image"][0]["predictions"][0]["status"] == "ignored"
  assert on_object["num_predictions"] == 0
  # Moved far from it, it is a false positive: it lowers AP, which TAO's skip would hide.
  elsewhere = copy.deepcopy(predictions)
  elsewhere[0]["projected_points"] = (np.asarray(elsewhere[0]["projected_points"]) + [150.0, 0.0]).tolist()
  elsewhere[0]["score"] = 0.99
  f01_predictions, f01_annotation = _frame(frames, "f01_synth")
  clean = _evaluate([("f01", f01_predictions, f01_annotation)])
  with_false_positive = _evaluate([("f01", f01_predictions, f01_annotation), ("f08", elsewhere, annotation)])
  assert with_false_positive["per_image"][1]["predictions"][0]["status"] == "unmatched"
  assert with_false_positive["num_predictions"] == clean["num_predictions"] + 1
  assert with_false_positive["headline"]["3DIoU_AP@0.5"] < clean["headline"]["3DIoU_AP@0.5"]
  tao = _evaluate([("f01", f01_predictions, f01_annotation), ("f08", elsewhere, annotation)], tao_compatible=True)
  assert not tao["per_image"][1]["evaluated"]


def _scaled_frame(predictions, annotation, factor):
  """The same frame at `factor` times the image size (pixels scaled; the projection matrix is normalised)."""
  predictions, annotation = copy.deepcopy(predictions), copy.deepcopy(annotation)
  for prediction in predictions:
    prediction["projected_points"] = (np.asarray(prediction["projected_points"]) * factor).tolist()
  for item in annotation["objects"]:
    item["projected_cuboid"] = (np.asarray(item["projected_cuboid"]) * factor).tolist()
  annotation["camera_data"]["width"] *= factor
  annotation["camera_data"]["height"] *= factor
  return predictions, annotation


@pytest.mark.parametrize("tao_compatible", [False, True])
def test_each_frame_uses_its_own_image_size(frames, tao_compatible):
  predictions, annotation = _frame(frames, "f01_synth")
  large = _scaled_frame(predictions, annotation, 2)
  results = _evaluate([("small", predictions, annotation), ("large", *large)], tao_compatible=tao_compatible)
  small_rows, large_rows = (row["predictions"] for row in results["per_image"])
  assert [p["status"] for p in small_rows] == [p["status"] for p in large_rows]
  for small, big in zip(small_rows, large_rows):
    for name in ("pixel", "iou", "add", "azimuth"):
      if name in small:
        assert big[name] == pytest.approx(small[name], abs=1e-12)
  # Explicit sizes take the place of camera_data's (for predictions and ground truth alike).
  wrong_size = copy.deepcopy(large[1])
  wrong_size["camera_data"]["width"], wrong_size["camera_data"]["height"] = 1, 1
  row = Evaluator(tao_compatible=tao_compatible).add_frame(
      from_tao_predictions(large[0]), wrong_size, width=large[1]["camera_data"]["width"],
      height=large[1]["camera_data"]["height"])
  assert row["predictions"][0]["pixel"] == pytest.approx(small_rows[0]["pixel"], abs=1e-12)


def test_predictions_are_not_modified(frames):
  predictions, annotation = _frame(frames, "f01_synth")
  detections = from_tao_predictions(predictions)
  before = copy.deepcopy(detections)
  Evaluator(tao_compatible=True).add_frame(detections, annotation)
  np.testing.assert_equal([dataclasses.asdict(d) for d in detections], [dataclasses.asdict(d) for d in before])


def test_missing_visibility_is_treated_as_visible(frames):
  predictions, annotation = _frame(frames, "f01_synth")
  assert all(item["visibility"] == 1.0 for item in annotation["objects"])
  stripped = copy.deepcopy(annotation)
  for item in stripped["objects"]:
    del item["visibility"]
  for tao_compatible in (False, True):
    with_key = _evaluate([("a", predictions, annotation)], tao_compatible=tao_compatible)
    without_key = _evaluate([("a", predictions, stripped)], tao_compatible=tao_compatible)
    assert without_key["ap"] == with_key["ap"] and without_key["means"] == with_key["means"]


@pytest.mark.parametrize("change", ["no_ar_data", "zero_normal"])
def test_missing_ground_plane_falls_back_to_ground_truth_height(frames, change):
  predictions, annotation = _frame(frames, "f06_synth")  # predictions 0 and 2 are exact PnP poses
  changed = copy.deepcopy(annotation)
  if change == "no_ar_data":
    del changed["AR_data"]
  else:
    changed["AR_data"]["plane_normal"] = [0.0, 0.0, 0.0]
  plane = _evaluate([("a", predictions, annotation)])["per_image"][0]["predictions"]
  fallback = _evaluate([("a", predictions, changed)])["per_image"][0]["predictions"]
  assert {p["scale_source"] for p in plane} == {"ar_plane"}
  assert {p["scale_source"] for p in fallback} == {"gt_height"}
  for index in (0, 2):
    # Exact poses: both ways give the metric box; the factor is the ground truth's height / predicted height.
    assert fallback[index]["scale_factor"] == pytest.approx(plane[index]["scale_factor"], rel=1e-4)
    assert fallback[index]["iou"] > 0.99 and fallback[index]["add"] < 1e-3


def test_from_config():
  config = default.get_config()
  config.evaluate.eval_num_symmetry = 12
  config.evaluate.tao_compatible = True
  evaluator = Evaluator.from_config(config)
  assert (evaluator.num_symmetry, evaluator.tao_compatible, evaluator.use_absolute_scale) == (12, True, False)


def test_a_detection_without_a_pose_is_refused(frames):
  predictions, annotation = _frame(frames, "f01_synth")
  unposed = dataclasses.replace(from_tao_predictions(predictions)[0], pose=None)
  with pytest.raises(ValueError, match="pose"):
    Evaluator().add_frame([unposed], annotation)
