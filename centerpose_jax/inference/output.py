"""The per-image prediction JSON: TAO's inference output plus each object's score and 2D box, the camera used,
and the frame and unit of the poses."""

import json
import pathlib
from typing import List

import numpy as np

from centerpose_jax.inference import detection as detection_lib
from centerpose_jax.inference.detection import Detection
from centerpose_jax.inference.detection import Pose

# Pose fields written at each object's top level, in TAO's schema; an empty list each without a pose.
_POSE_KEYS = ("location", "quaternion_xyzw", "projected_keypoints_2d", "keypoints_3d")


def _plain(value):
  """JSON-ready value: numpy arrays and scalars as nested lists of Python numbers."""
  if isinstance(value, (np.ndarray, np.generic)):
    return value.tolist()
  if isinstance(value, (list, tuple)):
    return [_plain(v) for v in value]
  return value


def _pose_fields(pose) -> dict:
  """{location, quaternion_xyzw, projected_keypoints_2d, keypoints_3d} of a `Pose` (empty lists for None)."""
  return {key: [] if pose is None else _plain(getattr(pose, key)) for key in _POSE_KEYS}


def _object(detection: Detection) -> dict:
  """One object of the JSON: TAO's fields plus `score`, `bbox` and, for a tracked detection, `track_id`."""
  obj = {"id": detection.id, "score": _plain(detection.score), "bbox": _plain(detection.bbox),
         "relative_scale": _plain(detection.relative_scale), "keypoints_2d": _plain(detection.keypoints_2d)}
  obj.update(_pose_fields(detection.pose))
  if detection.track_id is not None:
    obj["track_id"] = detection.track_id
  return obj


def prediction_record(image_name, detections, *, camera=None, opencv=True, metric=False) -> dict:
  """The output JSON of one image: {"image_name", "objects": [...], "camera_data", "pose_frame", "pose_unit"}.

  Each object is a `detection.Detection`: `id`, `score`, `bbox` [4] px, `relative_scale` [3], `keypoints_2d`
  [8, 2] px, and its pose's `location` [3], `quaternion_xyzw` [4], `projected_keypoints_2d` [9, 2] px,
  `keypoints_3d` [9, 3]; without a pose these four are empty lists, as TAO; `track_id` when it has one. Beyond
  TAO's schema (docs/data-format.md, "Inference output"):
    camera_data: {"intrinsics": {fx, fy, cx, cy, skew} pixels, "source": "config" or the JSON it came from},
      or None when no pose was solved (`inference.use_pnp=False`);
    pose_frame: "opencv" (x right, y down, z forward) or "objectron_opengl" (Objectron's portrait OpenGL frame,
      (x, y, z)_gl = (y, x, -z)_cv), the frame of `location`, `quaternion_xyzw` and `keypoints_3d`;
    pose_unit: "relative" (TAO's: the cuboid's size is `relative_scale`, its height about 1) or "metre"
      (`inference.object_height` gave the real height).

  Args:
    image_name: the image's file name (no folder).
    detections: `Detection`s (`postprocess_detections` output), their poses in the frame and unit below.
    camera: the `camera.Camera` the poses were solved with (None without PnP).
    opencv: the frame of the poses (`inference.opencv`).
    metric: the poses are in metres (`inference.object_height` > 0).
  """
  objects = [_object(detection) for detection in detections]
  camera_data = None
  if camera is not None:
    intrinsics = camera.record()
    camera_data = {"source": intrinsics.pop("source"), "intrinsics": intrinsics}
  return {"image_name": image_name, "objects": objects, "camera_data": camera_data,
          "pose_frame": detection_lib.frame_name(bool(opencv)),
          "pose_unit": detection_lib.METRE if metric else detection_lib.RELATIVE}


def tracked_record(image_name, tracked, **record_options) -> dict:
  """The output JSON of one video frame with tracking: `prediction_record` (with `record_options`) of the
  tracks' raw detections (each pose is the frame's own PnP pose; each object has its `track_id`), each object
  with `filtered` {`location` [3], `quaternion_xyzw` [4], `relative_scale` [3], `keypoints_3d` [9, 3],
  `projected_keypoints_2d` [9, 2] px}: the track's filtered pose and scale, in the same frame and unit.

  Args:
    image_name: a name for the frame.
    tracked: `tracking.Tracker.update` output (`TrackedObject`s).
    **record_options: `camera`, `opencv`, `metric` of `prediction_record`.
  """
  record = prediction_record(image_name, [t.detection for t in tracked], **record_options)
  for obj, t in zip(record["objects"], tracked):
    obj["filtered"] = dict(_pose_fields(t.filtered_pose), relative_scale=_plain(t.filtered_scale))
  return record


def _array(values) -> np.ndarray:
  return np.asarray(values, dtype=np.float64)


def _pose_from_fields(fields, frame, unit):
  """The `Pose` of an object's (or its `filtered`) JSON fields; None when they are empty (no pose)."""
  if not len(fields["location"]):
    return None
  return Pose(location=_array(fields["location"]), quaternion_xyzw=_array(fields["quaternion_xyzw"]),
              projected_keypoints_2d=_array(fields["projected_keypoints_2d"]),
              keypoints_3d=_array(fields["keypoints_3d"]), frame=frame, unit=unit)


def detections_from_record(record, *, filtered=False) -> List[Detection]:
  """The `Detection`s of an output JSON record (`prediction_record` or `tracked_record`), read back.

  Args:
    record: the parsed JSON of one image or video frame.
    filtered: for a `tracked_record`, each detection with its track's filtered pose and `relative_scale`
      instead of the frame's own.
  """
  detections = []
  for obj in record["objects"]:
    pose_fields = obj["filtered"] if filtered else obj
    detections.append(Detection(
        id=obj["id"], score=float(obj["score"]), bbox=_array(obj["bbox"]), keypoints_2d=_array(obj["keypoints_2d"]),
        relative_scale=_array(pose_fields["relative_scale"]),
        pose=_pose_from_fields(pose_fields, record["pose_frame"], record["pose_unit"]),
        track_id=obj.get("track_id")))
  return detections


def write_prediction_json(path, image_name, detections, **record_options) -> None:
  """Writes `prediction_record(image_name, detections, **record_options)` to `path` with sorted keys and
  indent 4 (TAO)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w") as f:
    json.dump(prediction_record(image_name, detections, **record_options), f, indent=4, sort_keys=True)
