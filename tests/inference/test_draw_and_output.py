"""Drawing of posed detections and the per-image prediction JSON."""

import dataclasses
import json

import numpy as np
import pytest

from centerpose_jax.inference import camera as camera_lib
from centerpose_jax.inference import detection as detection_lib
from centerpose_jax.inference import draw_detections
from centerpose_jax.inference import prediction_record
from centerpose_jax.inference import solve_pnp
from centerpose_jax.inference import write_prediction_json
from centerpose_jax.inference.output import detections_from_record


def _detection(case, opencv):
  pose = solve_pnp(np.array(case["points_in"]), np.array(case["K"]), case["scale"], opencv=opencv)
  corners = np.array(case["points_in"])
  return detection_lib.Detection(id="object_0", score=0.87, bbox=np.concatenate([corners.min(0), corners.max(0)]),
                                 keypoints_2d=corners, relative_scale=np.array(case["scale"]), pose=pose)


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


def test_drawing_is_frame_and_unit_independent(case):
  width, height = case["image_wh"]
  image = np.zeros((height, width, 3), np.uint8)
  camera_k = np.array(case["K"])
  from_cv = draw_detections(image, [_detection(case, opencv=True)], camera_k, axis_size=0.3)
  from_gl = draw_detections(image, [_detection(case, opencv=False)], camera_k, axis_size=0.3)
  np.testing.assert_array_equal(from_cv, from_gl)
  assert not np.array_equal(from_cv, draw_detections(image, [_detection(case, opencv=True)], camera_k))
  # A metric pose (inference.object_height: location and keypoints_3d scaled) draws the same picture.
  posed = _detection(case, opencv=True)
  metric = dataclasses.replace(posed, pose=posed.pose.in_metres(0.42))
  np.testing.assert_array_equal(draw_detections(image, [metric], camera_k, axis_size=0.3), from_cv)


def test_without_a_pose_the_2d_cuboid_comes_from_the_keypoints(case):
  """inference.use_pnp=False: no camera, the cuboid edges join the regressed corners."""
  width, height = case["image_wh"]
  image = np.zeros((height, width, 3), np.uint8)
  unposed = dataclasses.replace(_detection(case, opencv=True), pose=None)
  drawn = draw_detections(image, [unposed])
  assert _has_colour(drawn, (0, 0, 255)) and _has_colour(drawn, (0, 255, 0))  # edges and point indices
  assert not _has_colour(drawn, (255, 0, 0))  # no axes without a pose
  middle = np.mean(np.array(case["points_in"])[[0, 4]], axis=0).astype(int)  # the corner 1 -> 5 edge
  assert _has_colour(drawn[middle[1] - 2:middle[1] + 3, middle[0] - 2:middle[0] + 3], (0, 0, 255))


def test_prediction_json_schema(case, tmp_path):
  posed = _detection(case, opencv=True)
  unposed = dataclasses.replace(posed, id="object_1", pose=None)
  path = tmp_path / "out" / "frame_0001.json"
  camera = camera_lib.Camera(np.array(case["K"], np.float64), "config")
  write_prediction_json(path, "frame_0001.png", [posed, unposed], camera=camera)
  text = path.read_text()
  assert text.startswith('{\n    "camera_data": {\n        "intrinsics": {')  # sorted keys, indent 4
  record = json.loads(text)
  assert list(record) == ["camera_data", "image_name", "objects", "pose_frame", "pose_unit"]
  k = np.array(case["K"])
  assert record["camera_data"] == {"intrinsics": {"cx": k[0, 2], "cy": k[1, 2], "fx": k[0, 0], "fy": k[1, 1],
                                                  "skew": k[0, 1]}, "source": "config"}
  assert (record["image_name"], record["pose_frame"], record["pose_unit"]) == ("frame_0001.png", "opencv", "relative")
  first, second = record["objects"]
  assert list(first) == sorted(["bbox", "id", "keypoints_2d", "keypoints_3d", "location", "projected_keypoints_2d",
                                "quaternion_xyzw", "relative_scale", "score"])
  assert first["id"] == "object_0" and first["score"] == 0.87
  shapes = {"bbox": (4,), "keypoints_2d": (8, 2), "keypoints_3d": (9, 3), "location": (3,),
            "projected_keypoints_2d": (9, 2), "quaternion_xyzw": (4,), "relative_scale": (3,)}
  for key, shape in shapes.items():
    assert np.array(first[key]).shape == shape, key
  np.testing.assert_allclose(first["location"], posed.pose.location)
  np.testing.assert_allclose(first["keypoints_3d"], posed.pose.keypoints_3d)
  for key in ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d"):
    assert second[key] == []  # no pose, as TAO writes it
  np.testing.assert_allclose(second["keypoints_2d"], case["points_in"])


def test_every_record_states_its_frame_and_unit():
  gl_metric = prediction_record("a.png", [], camera=None, opencv=False, metric=True)
  assert (gl_metric["pose_frame"], gl_metric["pose_unit"], gl_metric["camera_data"]) == (
      "objectron_opengl", "metre", None)


def test_a_record_reads_back_into_the_same_detections(case):
  posed = dataclasses.replace(_detection(case, opencv=False), track_id=3)
  unposed = dataclasses.replace(posed, id="object_1", pose=None, track_id=None)
  record = json.loads(json.dumps(prediction_record("a.png", [posed, unposed], opencv=False)))
  assert record["objects"][0]["track_id"] == 3 and "track_id" not in record["objects"][1]
  read = detections_from_record(record)
  np.testing.assert_equal([dataclasses.asdict(d) for d in read], [dataclasses.asdict(d) for d in (posed, unposed)])
  assert read[0].pose.frame == detection_lib.OBJECTRON_OPENGL and read[0].pose.unit == detection_lib.RELATIVE
  with pytest.raises(ValueError, match="Pose.frame"):
    dataclasses.replace(posed.pose, frame="opengl")
