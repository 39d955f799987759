"""The per-image prediction JSON: TAO's inference output plus each object's score and 2D box, the camera used,
and the frame and unit of the poses."""

import json
import pathlib

import numpy as np

# Detection keys written per object, in TAO's schema, plus `score` and `bbox`.
_POSE_KEYS = ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d")
_OBJECT_KEYS = ("id", "score", "bbox", "relative_scale", "keypoints_2d") + _POSE_KEYS


def _plain(value):
  """JSON-ready value: numpy arrays and scalars as nested lists of Python numbers."""
  if isinstance(value, (np.ndarray, np.generic)):
    return value.tolist()
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


POSE_FRAMES = {True: "opencv", False: "objectron_opengl"}
POSE_UNITS = {False: "relative", True: "metre"}


def prediction_record(image_name, detections, *, camera=None, opencv=True, metric=False) -> dict:
  """The output JSON of one image: {"image_name", "objects": [...], "camera_data", "pose_frame", "pose_unit"}.

  Each object has `id`, `score`, `bbox` [4] px, `relative_scale` [3], `keypoints_2d` [8, 2] px, and
  `location` [3], `quaternion_xyzw` [4], `projected_keypoints_2d` [9, 2] px, `keypoints_3d` [9, 3]; without a
  pose these four are empty lists, as TAO. Beyond TAO's schema (docs/data-format.md, "Inference output"):
    camera_data: {"intrinsics": {fx, fy, cx, cy, skew} pixels, "source": "config" or the JSON it came from},
      or None when no pose was solved (`inference.use_pnp=False`);
    pose_frame: "opencv" (x right, y down, z forward) or "objectron_opengl" (Objectron's portrait OpenGL frame,
      (x, y, z)_gl = (y, x, -z)_cv), the frame of `location`, `quaternion_xyzw` and `keypoints_3d`;
    pose_unit: "relative" (TAO's: the cuboid's size is `relative_scale`, its height about 1) or "metre"
      (`inference.object_height` gave the real height).

  Args:
    image_name: the image's file name (no folder).
    detections: `postprocess_detections` output.
    camera: the `camera.Camera` the poses were solved with (None without PnP).
    opencv: the frame of the poses (`inference.opencv`).
    metric: the poses are in metres (`inference.object_height` > 0).
  """
  objects = []
  for detection in detections:
    objects.append({key: _plain(detection.get(key, [])) for key in _OBJECT_KEYS})
  camera_data = None
  if camera is not None:
    intrinsics = camera.record()
    camera_data = {"source": intrinsics.pop("source"), "intrinsics": intrinsics}
  return {"image_name": image_name, "objects": objects, "camera_data": camera_data,
          "pose_frame": POSE_FRAMES[bool(opencv)], "pose_unit": POSE_UNITS[bool(metric)]}


# The filtered pose of a tracked object (`tracking.TrackedObject.filtered`).
_FILTERED_KEYS = ("location", "quaternion_xyzw", "relative_scale", "keypoints_3d", "projected_keypoints_2d")


def tracked_record(image_name, tracked, **record_options) -> dict:
  """The output JSON of one video frame with tracking: `prediction_record` (with `record_options`) of the
  tracks' raw detections (each pose is the frame's own PnP pose), each object with `track_id` and `filtered`
  {`location` [3], `quaternion_xyzw` [4], `relative_scale` [3], `keypoints_3d` [9, 3], `projected_keypoints_2d`
  [9, 2] px}: the track's filtered pose, in the same frame and unit.

  Args:
    image_name: a name for the frame.
    tracked: `tracking.Tracker.update` output (`TrackedObject`s).
    **record_options: `camera`, `opencv`, `metric` of `prediction_record`.
  """
  record = prediction_record(image_name, [t.detection for t in tracked], **record_options)
  for obj, t in zip(record["objects"], tracked):
    obj["track_id"] = t.track_id
    obj["filtered"] = {key: _plain(t.filtered[key]) for key in _FILTERED_KEYS}
  return record


def write_prediction_json(path, image_name, detections, **record_options) -> None:
  """Writes `prediction_record(image_name, detections, **record_options)` to `path` with sorted keys and
  indent 4 (TAO)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    json.dump(prediction_record(image_name, detections, **record_options), f, indent=4, sort_keys=True)
