"""Drawing of posed detections and the per-image prediction JSON."""

import json

import numpy as np
import pytest

from centerpose_jax.inference import draw_detections
from centerpose_jax.inference import solve_pnp
from centerpose_jax.inference import write_prediction_json


def _detection(case, opencv):
  pose = solve_pnp(np.array(case["points_in"]), np.array(case["K"]), case["scale"], opencv=opencv)
  corners = np.array(case["points_in"])
  return {"id": "object_0", "score": 0.87, "bbox": np.concatenate([corners.min(0), corners.max(0)]),
          "keypoints_2d": corners, "relative_scale": np.array(case["scale"]), "location": pose["location"],
          "quaternion_xyzw": pose["quaternion_xyzw"], "projected_keypoints_2d": pose["projected_points"],
          "keypoints_3d": pose["points_3d"]}


@pytest.fixture(scope="module")
def case(tao_reference):
  with open(tao_reference / "pnp" / "pnp_cases.json") as f:
    return next(c for c in json.load(f) if c["kind"] == "exact")


def _has_colour(image, bgr):
  return bool(np.any(np.all(image == np.array(bgr, np.uint8), axis=-1)))


def test_drawing_marks_the_object(case):
  width, height = case["image_wh"]
  image = np.full((height, width, 3), 90, np.uint8)
  drawn = draw_detections(image, [_detection(case, opencv=True)], np.array(case["K"]))
  assert drawn.shape == image.shape and drawn.dtype == np.uint8
  assert np.all(image == 90)  # the input is left untouched
  for colour in ((0, 0, 255), (0, 255, 0), (255, 0, 0), (0, 0, 0), (255, 255, 255)):  # edges, text, axes, label
    assert _has_colour(drawn, colour), colour
  # A cuboid edge (corner 1 -> corner 5 at their midpoint) is drawn in red.
  middle = np.mean(np.array(case["points_in"])[[0, 4]], axis=0).astype(int)
  patch = drawn[middle[1] - 2:middle[1] + 3, middle[0] - 2:middle[0] + 3]
  assert _has_colour(patch, (0, 0, 255))


def test_drawing_is_frame_independent_and_skips_unposed(case):
  width, height = case["image_wh"]
  image = np.zeros((height, width, 3), np.uint8)
  camera_k = np.array(case["K"])
  from_cv = draw_detections(image, [_detection(case, opencv=True)], camera_k, axis_size=0.3)
  from_gl = draw_detections(image, [_detection(case, opencv=False)], camera_k, axis_size=0.3, opencv=False)
  np.testing.assert_array_equal(from_cv, from_gl)
  assert not np.array_equal(from_cv, draw_detections(image, [_detection(case, opencv=True)], camera_k))
  unposed = {key: value for key, value in _detection(case, opencv=True).items()
             if key not in ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d")}
  np.testing.assert_array_equal(draw_detections(image, [unposed], camera_k), image)


def test_prediction_json_schema(case, tmp_path):
  posed = _detection(case, opencv=True)
  unposed = {key: posed[key] for key in ("id", "score", "bbox", "keypoints_2d", "relative_scale")}
  unposed["id"] = "object_1"
  path = tmp_path / "out" / "frame_0001.json"
  write_prediction_json(path, "frame_0001.png", [posed, unposed])
  text = path.read_text()
  assert text.startswith('{\n    "image_name": "frame_0001.png",\n    "objects": [')  # sorted keys, indent 4
  record = json.loads(text)
  assert list(record) == ["image_name", "objects"]
  first, second = record["objects"]
  assert list(first) == sorted(["bbox", "id", "keypoints_2d", "keypoints_3d", "location", "projected_keypoints_2d",
                                "quaternion_xyzw", "relative_scale", "score"])
  assert first["id"] == "object_0" and first["score"] == 0.87
  shapes = {"bbox": (4,), "keypoints_2d": (8, 2), "keypoints_3d": (9, 3), "location": (3,),
            "projected_keypoints_2d": (9, 2), "quaternion_xyzw": (4,), "relative_scale": (3,)}
  for key, shape in shapes.items():
    assert np.array(first[key]).shape == shape, key
  np.testing.assert_allclose(first["location"], posed["location"])
  np.testing.assert_allclose(first["keypoints_3d"], posed["keypoints_3d"])
  for key in ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d"):
    assert second[key] == []  # no pose, as TAO writes it
  np.testing.assert_allclose(second["keypoints_2d"], case["points_in"])
