"""Objectron's `v1/records_shuffled/<class>/<class>_<split>-NNNNN-of-MMMMM` files (TFRecords of
tf.train.Example, one annotated frame each) as frames, without TensorFlow.

Features read (Objectron's schema/features.py): `image/encoded` (the frame, PNG or JPEG), `image/filename`
(the sequence id, "chair/batch-36/17") and `image/id` (its frame index) when present, `instance_num`,
`point_num` (keypoints per instance), `point_2d` (x, y, depth per keypoint: normalised image coordinates),
`point_3d` (camera frame), `object/scale`, `object/visibility`, `camera/projection`, `camera/view`
(row-major 4x4) and `plane/center`, `plane/normal`. The records carry no world pose of the objects, so each
box's object -> camera pose is fitted to its `point_3d` and `object/scale` (`geometry.fit_cuboid_pose`, exact
for a box); the camera pose is the inverse of the view matrix.
"""

from typing import Tuple

import numpy as np
from google.protobuf import message as protobuf_message

from centerpose_jax import errors
from centerpose_jax import geometry
from centerpose_jax.objectron import frames
from centerpose_jax.objectron.proto import example_pb2


class RecordError(errors.CenterPoseError, ValueError):
  """A record that is not a usable Objectron tf.train.Example; the message names the feature."""


def _values(features, name, kind, required=True):
  feature = features.get(name)
  if feature is None or feature.WhichOneof("kind") != kind:
    if required:
      raise RecordError(f"feature {name!r}: missing")
    return None
  return getattr(feature, kind).value


def _floats(features, name, count=None, required=True):
  values = _values(features, name, "float_list", required)
  if values is None:
    return None
  array = np.asarray(values, np.float64)
  if count is not None and array.size != count:
    raise RecordError(f"feature {name!r}: {array.size} values, expected {count}")
  return array


def parse_example(data: bytes, category: str) -> Tuple[frames.AnnotatedFrame, bytes]:
  """(the frame, its encoded image) of one serialized Objectron tf.train.Example."""
  try:
    example = example_pb2.Example.FromString(data)
  except protobuf_message.DecodeError as error:
    raise RecordError("not a tf.train.Example") from error
  features = example.features.feature
  image = _values(features, "image/encoded", "bytes_list")
  if len(image) != 1:
    raise RecordError(f"feature 'image/encoded': {len(image)} images, expected 1")
  filename = _values(features, "image/filename", "bytes_list", required=False)
  image_id = _values(features, "image/id", "int64_list", required=False)
  count = int(_values(features, "instance_num", "int64_list")[0])
  points_per_instance = [int(n) for n in _values(features, "point_num", "int64_list")]
  if len(points_per_instance) != count:
    raise RecordError(f"feature 'point_num': {len(points_per_instance)} instances, instance_num says {count}")
  total = sum(points_per_instance)
  points_2d = _floats(features, "point_2d", 3 * total).reshape(total, 3)
  points_3d = _floats(features, "point_3d", 3 * total).reshape(total, 3)
  scales = _floats(features, "object/scale", 3 * count).reshape(count, 3)
  visibility = _floats(features, "object/visibility", count)
  view = _floats(features, "camera/view", 16).reshape(4, 4)
  center = _floats(features, "plane/center", 3, required=False)
  normal = _floats(features, "plane/normal", 3, required=False)
  frame = frames.AnnotatedFrame(
      sequence=filename[0].decode("utf-8", "replace") if filename else "",
      frame_index=int(image_id[0]) if image_id else -1,
      projection=_floats(features, "camera/projection", 16).reshape(4, 4), view=view,
      camera_to_world=np.linalg.inv(view), plane_center=center, plane_normal=normal, objects=[])
  starts = np.cumsum([0] + points_per_instance)
  for index in range(count):
    keypoints_3d = points_3d[starts[index]:starts[index + 1]]
    problem = frames.check_box(scales[index], keypoints_3d)
    if problem is not None:
      frame.skipped.append(problem)
      continue
    rotation, translation = geometry.fit_cuboid_pose(keypoints_3d, scales[index])
    problem = frames.check_pose(rotation, translation, scales[index], keypoints_3d)
    if problem is not None:
      frame.skipped.append(problem)
      continue
    frame.objects.append(frames.AnnotatedObject(
        index=index, category=category, scale=scales[index], rotation=rotation, translation=translation,
        keypoints_2d=points_2d[starts[index]:starts[index + 1], :2], keypoints_3d=keypoints_3d,
        visibility=float(visibility[index])))
  return frame, image[0]
