"""6-DoF pose of a predicted cuboid from its 2D keypoints with OpenCV's PnP (TAO's CuboidPNPSolver)."""

from typing import Optional

import cv2
import numpy as np

from centerpose_jax import geometry
from centerpose_jax.inference import detection as detection_lib

# A keypoint with x or y below this is a placeholder (TAO writes -10000) and is left out of PnP.
PLACEHOLDER_LIMIT = -5000.0
# Fewest valid points PnP is run with; below ITERATIVE_MIN_POINTS it uses EPnP instead of the iterative solver.
MIN_POINTS = 4
ITERATIVE_MIN_POINTS = 6
NUM_CORNERS = 8


def _correspondences(keypoints_2d, corners_3d):
  """Valid (2D [N, 2], 3D [N, 3]) pairs: point i of M = 8k keypoints belongs to corner i // k.

  A point is valid when both coordinates are finite and >= PLACEHOLDER_LIMIT.
  """
  points = np.asarray(keypoints_2d, dtype=np.float64).reshape(-1, 2)
  if len(points) % NUM_CORNERS:
    raise ValueError(f"expected 8 or 16 keypoints (a multiple of 8), got {len(points)}")
  corner_of_point = np.arange(len(points)) // (len(points) // NUM_CORNERS)
  valid = (points[:, 0] >= PLACEHOLDER_LIMIT) & (points[:, 1] >= PLACEHOLDER_LIMIT) & np.isfinite(points).all(axis=1)
  return points[valid], corners_3d[corner_of_point[valid]]


def _with_mean_first(points) -> np.ndarray:
  """[N + 1, D]: the mean of points [N, D] followed by the points."""
  return np.concatenate([points.sum(axis=0, keepdims=True) / len(points), points])


def solve_pnp(keypoints_2d, camera_matrix, relative_scale, opencv=True) -> Optional[detection_lib.Pose]:
  """Pose of the cuboid of size `relative_scale` whose corners project to `keypoints_2d`.

  As TAO: `cv2.solvePnPGeneric` with zero distortion, SOLVEPNP_ITERATIVE with 6 or more valid points,
  SOLVEPNP_EPNP with 4 or 5, failure with fewer; a solution with OpenCV z < 0 (behind the camera) fails.

  Args:
    keypoints_2d: [8, 2] corner pixels (Objectron corners 1..8), or [16, 2] with two points per corner
      interleaved (point i -> corner i // 2, e.g. displacement then heatmap keypoint). Points with x or y
      below -5000 (the -10000 placeholder) or not finite are skipped.
    camera_matrix: [3, 3] intrinsics K in pixels.
    relative_scale: [3] cuboid size (x width, y height, z depth) in the units of the returned location
      (the network's relative scale, used as is).
    opencv: True for the pose in the OpenCV camera frame (x right, y down, z forward), False for the
      Objectron OpenGL frame (x, y, z)_gl = (y, x, -z)_cv.

  Returns:
    None on failure, else a `detection.Pose` of float64 arrays in relative-scale units, its `frame` chosen by
    `opencv`: `location` [3] the object centre; `quaternion_xyzw` [4] the object->camera rotation, scipy order;
    `projected_keypoints_2d` [9, 2] pixels of the 8 corners under the OpenCV pose, with their mean first;
    `keypoints_3d` [9, 3] the 8 corners in the camera frame, with their mean first.
  """
  model = geometry.cuboid_vertices(relative_scale)  # [9, 3], centre first
  points_2d, points_3d = _correspondences(keypoints_2d, model[1:])
  if len(points_2d) < MIN_POINTS:
    return None
  flags = cv2.SOLVEPNP_ITERATIVE if len(points_2d) >= ITERATIVE_MIN_POINTS else cv2.SOLVEPNP_EPNP
  camera_k = np.asarray(camera_matrix, dtype=np.float64)
  no_distortion = np.zeros((4, 1))
  solved, rvecs, tvecs, _ = cv2.solvePnPGeneric(points_3d, points_2d, camera_k, no_distortion, flags=flags)
  if not solved:
    return None
  rvec, tvec = np.asarray(rvecs[0], np.float64), np.asarray(tvecs[0], np.float64)
  location_cv = tvec.reshape(3)
  if location_cv[2] < 0:
    return None
  rotation_cv, _ = cv2.Rodrigues(rvec)
  projected, _ = cv2.projectPoints(model[1:], rvec, tvec, camera_k, no_distortion)
  projected = projected.reshape(NUM_CORNERS, 2)

  if opencv:
    rotation, location = rotation_cv, location_cv
  else:
    rotation = geometry.rotation_opencv_to_opengl(rotation_cv)
    location = geometry.opencv_to_opengl(location_cv)
    rvec, _ = cv2.Rodrigues(rotation)
  corners_cam = model[1:] @ rotation.T + location
  return detection_lib.Pose(location=location, quaternion_xyzw=geometry.rotvec_to_quaternion(rvec),
                            projected_keypoints_2d=_with_mean_first(projected),
                            keypoints_3d=_with_mean_first(corners_cam), frame=detection_lib.frame_name(opencv))
