"""Detections made from known poses, for the tracking and pose-filter tests."""

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.inference import detection as detection_lib

CAMERA_K = geometry.camera_matrix(500.0, 500.0, 320.0, 240.0)
SCALE = np.array([0.8, 1.0, 0.6])


def detection(rotation, translation, scale=SCALE, camera_k=CAMERA_K, opencv=True,
              score=0.9) -> detection_lib.Detection:
  """A `Detection` of a cuboid at an OpenCV-frame pose, its pose in the asked frame."""
  rotation = np.asarray(rotation, dtype=np.float64)
  translation = np.asarray(translation, dtype=np.float64)
  points = geometry.cuboid_vertices(scale) @ rotation.T + translation
  pixels = geometry.project_with_intrinsics(points, camera_k)
  if not opencv:
    rotation = geometry.rotation_opencv_to_opengl(rotation)
    translation = geometry.opencv_to_opengl(translation)
    points = geometry.opencv_to_opengl(points)
  pose = detection_lib.Pose(location=translation, quaternion_xyzw=geometry.matrix_to_quaternion(rotation),
                            projected_keypoints_2d=pixels, keypoints_3d=points,
                            frame=detection_lib.frame_name(opencv))
  return detection_lib.Detection(id="object_0", score=score,
                                 bbox=np.concatenate([pixels.min(axis=0), pixels.max(axis=0)]),
                                 keypoints_2d=pixels[1:], relative_scale=np.asarray(scale, dtype=np.float64),
                                 pose=pose)
