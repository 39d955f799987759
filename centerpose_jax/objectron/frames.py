"""One annotated Objectron frame, whatever it was read from, and its CenterPose JSON label.

Both sources (`sequence`: annotation files + videos; `records`: records_shuffled tf.train.Examples) produce
`AnnotatedFrame`s; `frame_label` turns one into the label of docs/data-format.md for an image of any size:

  camera_data.intrinsics  from the frame's projection matrix P and the written image size
                          (`geometry.intrinsics_from_projection_matrix`): the K of the written, portrait,
                          resized image, under which `keypoints_3d` project onto `projected_cuboid`
  camera_data.*_matrix    P and the view matrix as recorded (P maps to normalised image coordinates, so it holds
                          for any image size); `location_world`, `quaternion_world_xyzw`: the camera pose
  projected_cuboid        the annotation's normalised 2D keypoints times (width, height)
  keypoints_3d            the annotation's camera-frame keypoints (OpenGL frame, metres)
  location, quaternion    the object -> camera pose in the OpenGL frame (view @ object_to_world for sequences)
  scale, visibility       as annotated; `class`, `name` (category_index), `provenance` "objectron"
"""

import dataclasses
from typing import List, Optional

import numpy as np

from centerpose_jax import geometry

PROVENANCE = "objectron"
# A box whose keypoints and pose differ by more than this (metres) is left out.
POSE_TOLERANCE = 1e-3


@dataclasses.dataclass
class AnnotatedObject:
  """One annotated box in one frame.

  Attributes:
    index: the object's position in its sequence (the key of the manual label lists, see `extras`).
    category: Objectron class name.
    scale: [3] box size (x, y, z) in metres.
    rotation: [3, 3] object -> camera rotation, OpenGL camera frame.
    translation: [3] box centre in the OpenGL camera frame, metres.
    keypoints_2d: [9, 2] normalised image coordinates (x along the width, y along the height, both in [0, 1]
      inside the image), centre then corners in Objectron order.
    keypoints_3d: [9, 3] the same points in the OpenGL camera frame, metres.
    visibility: annotated visible fraction.
  """
  index: int
  category: str
  scale: np.ndarray
  rotation: np.ndarray
  translation: np.ndarray
  keypoints_2d: np.ndarray
  keypoints_3d: np.ndarray
  visibility: float


@dataclasses.dataclass
class AnnotatedFrame:
  """One annotated frame.

  Attributes:
    sequence: the Objectron sequence id, e.g. "bike/batch-10/3" (empty when unknown).
    frame_index: the frame's index in its video.
    projection: [4, 4] Objectron projection matrix (OpenGL camera frame -> normalised device coordinates).
    view: [4, 4] world -> OpenGL camera transform.
    camera_to_world: [4, 4] the camera pose.
    plane_center, plane_normal: [3] the supporting plane in the OpenGL camera frame, or None if not recorded.
    objects: the frame's boxes.
    skipped: why each annotated box that is not in `objects` was left out (one reason per box).
  """
  sequence: str
  frame_index: int
  projection: np.ndarray
  view: np.ndarray
  camera_to_world: np.ndarray
  plane_center: Optional[np.ndarray]
  plane_normal: Optional[np.ndarray]
  objects: List[AnnotatedObject]
  skipped: List[str] = dataclasses.field(default_factory=list)


def sequence_key(sequence: str) -> str:
  """The folder name and label-list key of a sequence id: "bike/batch-10/3" -> "bike_batch-10_3"."""
  return sequence.strip("/").replace("/", "_")


def check_box(scale, keypoints_3d) -> Optional[str]:
  """Why an annotated object cannot be a CenterPose box (None when it can): 9 keypoints, a positive size."""
  if len(keypoints_3d) != 9:
    return "not a 9-keypoint box"
  if len(scale) != 3 or not np.all(np.asarray(scale) > 0):
    return "zero or missing size"
  return None


def check_pose(rotation, translation, scale, keypoints_3d) -> Optional[str]:
  """Why a box's pose [3, 3], [3] does not fit its keypoints [9, 3] (None when within `POSE_TOLERANCE`)."""
  box = geometry.cuboid_vertices(scale) @ np.asarray(rotation).T + translation
  if float(np.abs(box - keypoints_3d).max()) <= POSE_TOLERANCE:
    return None
  return f"pose and point_3d differ by more than {POSE_TOLERANCE * 1000:g} mm"


def object_label(obj: AnnotatedObject, width: int, height: int) -> dict:
  """The `objects[]` entry of `obj` for an image of `width` x `height` pixels (no category extras)."""
  return {
      "class": obj.category,
      "name": f"{obj.category}_{obj.index}",
      "provenance": PROVENANCE,
      "location": obj.translation.tolist(),
      "quaternion_xyzw": geometry.matrix_to_quaternion(obj.rotation).tolist(),
      "keypoints_3d": obj.keypoints_3d.tolist(),
      "projected_cuboid": (obj.keypoints_2d * np.array([width, height], np.float64)).tolist(),
      "scale": obj.scale.tolist(),
      "visibility": float(obj.visibility),
  }


def frame_label(frame: AnnotatedFrame, width: int, height: int, objects: List[dict]) -> dict:
  """The CenterPose JSON label of `frame` written as a `width` x `height` image, with `objects` (entries of
  `object_label`, possibly with category extras)."""
  fx, fy, cx, cy = geometry.intrinsics_from_projection_matrix(frame.projection, width, height)
  label = {
      "camera_data": {
          "width": int(width),
          "height": int(height),
          "intrinsics": {"fx": fx, "fy": fy, "cx": cx, "cy": cy},
          "camera_projection_matrix": frame.projection.tolist(),
          "camera_view_matrix": frame.view.tolist(),
          "location_world": frame.camera_to_world[:3, 3].tolist(),
          "quaternion_world_xyzw": geometry.matrix_to_quaternion(frame.camera_to_world[:3, :3]).tolist(),
      },
      "objects": objects,
  }
  if frame.plane_center is not None and frame.plane_normal is not None:
    label["AR_data"] = {"plane_center": frame.plane_center.tolist(), "plane_normal": frame.plane_normal.tolist()}
  return label
