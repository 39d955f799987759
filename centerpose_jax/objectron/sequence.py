"""Objectron annotation files (`annotations/<class>/batch-i/j.pbdata`: one `Sequence` message) as frames.

A Sequence holds its objects in world coordinates (rotation, translation, scale) and, per video frame, the
ARKit camera (transform = camera pose, view matrix = world -> OpenGL camera, projection matrix, intrinsics of
the landscape sensor image) and the annotated boxes (9 keypoints each: `point_3d` in the camera frame,
`point_2d` normalised over the portrait image, with depth). A frame's box is matched to its object by
`object_id`; its pose is view_matrix @ object_to_world, in the OpenGL camera frame.
"""

import pathlib

import numpy as np
from google.protobuf import message as protobuf_message

from centerpose_jax import errors
from centerpose_jax.objectron import frames
from centerpose_jax.objectron.proto import annotation_data_pb2


class SequenceError(errors.CenterPoseError, ValueError):
  """An annotation file that cannot be read or is inconsistent; the message names the file and field."""


def read_sequence(path) -> annotation_data_pb2.Sequence:
  """The Sequence message of the annotation file at `path` (raises SequenceError if unreadable or empty)."""
  path = pathlib.Path(path)
  try:
    sequence = annotation_data_pb2.Sequence.FromString(path.read_bytes())
  except (OSError, protobuf_message.DecodeError) as error:
    raise SequenceError(f"{path}: cannot read the annotation Sequence ({error})") from error
  if not sequence.frame_annotations:
    raise SequenceError(f"{path}: frame_annotations: empty")
  return sequence


def _matrix(values, shape, where) -> np.ndarray:
  if len(values) != shape[0] * shape[1]:
    raise SequenceError(f"{where}: {len(values)} values, expected {shape[0] * shape[1]}")
  matrix = np.asarray(values, np.float64).reshape(shape)
  if not np.all(np.isfinite(matrix)):
    raise SequenceError(f"{where}: contains NaN or infinite values")
  return matrix


def camera_image_size(sequence: annotation_data_pb2.Sequence, name="annotation"):
  """(width, height) of the portrait image the sequence's normalised keypoints refer to.

  ARKit records the landscape sensor size (1920 x 1440); Objectron's frames and keypoints are portrait, so the
  longer side is the height.
  """
  camera = sequence.frame_annotations[0].camera
  sides = (camera.image_resolution_width, camera.image_resolution_height)
  if min(sides) <= 0:
    raise SequenceError(f"{name}: frame_annotations[0].camera.image_resolution: missing ({sides[0]}x{sides[1]})")
  return min(sides), max(sides)


def annotated_frame(sequence: annotation_data_pb2.Sequence, frame_index: int, sequence_id: str,
                    category: str, name: str = "annotation") -> frames.AnnotatedFrame:
  """Frame `frame_index` of `sequence` (raises SequenceError naming `name` and the field for a bad camera)."""
  data = sequence.frame_annotations[frame_index]
  where = f"{name}: frame_annotations[{frame_index}].camera"
  view = _matrix(data.camera.view_matrix, (4, 4), f"{where}.view_matrix")
  frame = frames.AnnotatedFrame(
      sequence=sequence_id, frame_index=frame_index,
      projection=_matrix(data.camera.projection_matrix, (4, 4), f"{where}.projection_matrix"), view=view,
      camera_to_world=_matrix(data.camera.transform, (4, 4), f"{where}.transform"),
      plane_center=np.asarray(data.plane_center, np.float64) if len(data.plane_center) == 3 else None,
      plane_normal=np.asarray(data.plane_normal, np.float64) if len(data.plane_normal) == 3 else None,
      objects=[])
  objects = {obj.id: (index, obj) for index, obj in enumerate(sequence.objects)}
  for annotation in data.annotations:
    if annotation.object_id not in objects:
      frame.skipped.append("annotation of an unknown object id")
      continue
    index, obj = objects[annotation.object_id]
    keypoints_3d = np.array([(k.point_3d.x, k.point_3d.y, k.point_3d.z) for k in annotation.keypoints])
    keypoints_2d = np.array([(k.point_2d.x, k.point_2d.y) for k in annotation.keypoints])
    category_name = obj.category or category
    problem = frames.check_box(obj.scale, keypoints_3d)
    if problem is None and (len(obj.rotation) != 9 or len(obj.translation) != 3):
      problem = "no world pose (rotation, translation)"
    if problem is not None:
      frame.skipped.append(problem)
      continue
    object_to_world = np.eye(4)
    object_to_world[:3, :3] = np.asarray(obj.rotation, np.float64).reshape(3, 3)
    object_to_world[:3, 3] = obj.translation
    object_to_camera = view @ object_to_world
    scale = np.asarray(obj.scale, np.float64)
    problem = frames.check_pose(object_to_camera[:3, :3], object_to_camera[:3, 3], scale, keypoints_3d)
    if problem is not None:
      frame.skipped.append(problem)
      continue
    frame.objects.append(frames.AnnotatedObject(
        index=index, category=category_name, scale=scale, rotation=object_to_camera[:3, :3],
        translation=object_to_camera[:3, 3], keypoints_2d=keypoints_2d, keypoints_3d=keypoints_3d,
        visibility=float(annotation.visibility)))
  return frame
