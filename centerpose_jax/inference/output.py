"""The per-image prediction JSON, as TAO's inference output plus each object's score and 2D box."""

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


def prediction_record(image_name, detections) -> dict:
  """{"image_name", "objects": [...]} for one image.

  Each object has `id`, `score`, `bbox` [4] px, `relative_scale` [3], `keypoints_2d` [8, 2] px, and
  `location` [3], `quaternion_xyzw` [4], `projected_keypoints_2d` [9, 2] px, `keypoints_3d` [9, 3] (the
  frame chosen by `inference.opencv`); without a pose these four are empty lists, as TAO.

  Args:
    image_name: the image's file name (no folder).
    detections: `postprocess_detections` output.
  """
  objects = []
  for detection in detections:
    objects.append({key: _plain(detection.get(key, [])) for key in _OBJECT_KEYS})
  return {"image_name": image_name, "objects": objects}


# The filtered pose of a tracked object (`tracking.TrackedObject.filtered`).
_FILTERED_KEYS = ("location", "quaternion_xyzw", "relative_scale", "keypoints_3d", "projected_keypoints_2d")


def tracked_record(image_name, tracked) -> dict:
  """{"image_name", "objects": [...]} for one video frame with tracking.

  Each object is the raw detection as in `prediction_record` (its pose is the frame's own PnP pose) plus
  `track_id` and `filtered` {`location` [3], `quaternion_xyzw` [4], `relative_scale` [3], `keypoints_3d`
  [9, 3], `projected_keypoints_2d` [9, 2] px}: the track's filtered pose, in the same frame.

  Args:
    image_name: a name for the frame.
    tracked: `tracking.Tracker.update` output (`TrackedObject`s).
  """
  record = prediction_record(image_name, [t.detection for t in tracked])
  for obj, t in zip(record["objects"], tracked):
    obj["track_id"] = t.track_id
    obj["filtered"] = {key: _plain(t.filtered[key]) for key in _FILTERED_KEYS}
  return record


def write_prediction_json(path, image_name, detections) -> None:
  """Writes `prediction_record(image_name, detections)` to `path` with sorted keys and indent 4 (TAO)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    json.dump(prediction_record(image_name, detections), f, indent=4, sort_keys=True)
