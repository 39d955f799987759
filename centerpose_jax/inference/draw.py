"""Drawing of detections with a pose onto a BGR image, as TAO's inference visualisation."""

import cv2
import numpy as np

from centerpose_jax import geometry

RED, GREEN, BLUE, WHITE, BLACK = (0, 0, 255), (0, 255, 0), (255, 0, 0), (255, 255, 255), (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Missing keypoints (-10000) end no edge.
_MISSING_LIMIT = -10000
# Pixel coordinates are clipped to this before the integer cast (corners behind the camera project far away).
_PIXEL_LIMIT = 1 << 20


def _pixels(points) -> np.ndarray:
  """[N, 2] int32 pixels, truncated toward zero as TAO's int32 cast."""
  return np.clip(np.asarray(points, dtype=np.float64), -_PIXEL_LIMIT, _PIXEL_LIMIT).astype(np.int32)


def _draw_point_order(image, projected_points):
  """Index text "0".."8" (0 = centre) just below each projected point, green."""
  for index, (x, y) in enumerate(_pixels(projected_points)):
    text = str(index)
    (_, text_height), _ = cv2.getTextSize(text, _FONT, 1, 2)
    cv2.putText(image, text, (int(x), int(y) + text_height), _FONT, 1, GREEN, thickness=2, lineType=cv2.LINE_AA)


def _draw_cuboid(image, projected_points):
  """The 12 cuboid edges between the projected corners (rows 1..8 of [9, 2]), red; skips missing ends."""
  points = _pixels(projected_points)
  for start, end in geometry.EDGES:
    if np.any(points[[start, end]] <= _MISSING_LIMIT):
      continue
    cv2.line(image, tuple(int(v) for v in points[start]), tuple(int(v) for v in points[end]), RED, 2)


def _draw_axes(image, points_3d_cv, camera_k, axis_size):
  """Object axes from the centroid: x (corner 5 - 1) red, y (3 - 1) green, z (2 - 1) blue, `axis_size` long.

  Args:
    points_3d_cv: [9, 3] centroid and corners in the OpenCV camera frame.
    camera_k: [3, 3] intrinsics (pixels).
    axis_size: length of each axis, in the units of `points_3d_cv`.
  """
  origin = points_3d_cv[0]
  ends = [origin]
  for corner in (3, 2, 5):  # y (up), z (front), x (right)
    direction = points_3d_cv[corner] - points_3d_cv[1]
    length = np.linalg.norm(direction)
    ends.append(origin + (direction / length * axis_size if length else 0.0))
  pixels = [tuple(int(v) for v in p) for p in _pixels(geometry.project_with_intrinsics(ends, camera_k))]
  for end, color in zip(pixels[1:], (GREEN, BLUE, RED)):
    cv2.line(image, pixels[0], end, color, 5)


def _draw_relative_scale(image, bbox, relative_scale):
  """The relative scale as "x/y/z" text, white on a black box at the 2D box's top-left corner."""
  x, y = (int(v) for v in _pixels(np.reshape(bbox, (2, 2)))[0])
  text = "{:.3f}/{:.3f}/{:.3f}".format(*relative_scale)
  (text_width, text_height), _ = cv2.getTextSize(text, _FONT, 0.5, 2)
  cv2.rectangle(image, (x, y + 2), (x + text_width, y + text_height + 6), BLACK, -1)
  cv2.putText(image, text, (x, y + text_height), _FONT, 0.5, WHITE, thickness=1, lineType=cv2.LINE_AA)


def _units_per_relative_scale(points_3d, relative_scale) -> float:
  """How many units of `points_3d` [9, 3] one relative-scale unit is: 1 for TAO's relative poses, metres per
  unit for metric ones (`inference.object_height`); from the box height (corner 3 - corner 1)."""
  height = np.linalg.norm(points_3d[3] - points_3d[1])
  return float(height / relative_scale[1]) if relative_scale[1] else 1.0


def _draw_track_id(image, bbox, track_id):
  """"id N" in white on a black box just above the 2D box's top-left corner (inside the image)."""
  x, y = (int(v) for v in _pixels(np.reshape(bbox, (2, 2)))[0])
  text = f"id {track_id}"
  (text_width, text_height), _ = cv2.getTextSize(text, _FONT, 0.6, 2)
  top = max(y - text_height - 8, 0)
  cv2.rectangle(image, (x, top), (x + text_width + 4, top + text_height + 8), BLACK, -1)
  cv2.putText(image, text, (x + 2, top + text_height + 4), _FONT, 0.6, WHITE, thickness=2, lineType=cv2.LINE_AA)


def draw_detections(image_bgr, detections, camera_matrix=None, *, axis_size=0.5) -> np.ndarray:
  """A copy of the image with each detection drawn as TAO's inference visualisation.

  Per detection with a pose: point indices, cuboid edges, object axes and the relative-scale label, and
  "id N" above the 2D box when the detection has a `track_id` (`tracking.TrackedObject.as_detection`). A
  detection without a pose (`inference.use_pnp=False`) gets its 2D cuboid from the regressed corner keypoints
  (centre first: the mean of the 8 corners) and the label.

  Args:
    image_bgr: [H, W, 3] uint8 BGR image (the original image, not the letterboxed input).
    detections: `detection.Detection`s (`postprocess_detections` output, pixels of this image); a pose in the
      Objectron OpenGL frame is converted back to OpenCV for projection.
    camera_matrix: [3, 3] intrinsics K used for the pose (pixels); only needed for detections with a pose.
    axis_size: drawn axis length in relative-scale units (`inference.axis_size`; TAO hard-codes 0.5).

  Returns:
    [H, W, 3] uint8 BGR image.
  """
  image = np.ascontiguousarray(image_bgr).copy()
  for detection in detections:
    pose = detection.pose
    if pose is None:
      corners = np.asarray(detection.keypoints_2d, dtype=np.float64).reshape(-1, 2)
      points_2d = np.concatenate([corners.mean(axis=0, keepdims=True), corners])
      _draw_point_order(image, points_2d)
      _draw_cuboid(image, points_2d)
      _draw_relative_scale(image, detection.bbox, detection.relative_scale)
      continue
    points_3d = np.asarray(pose.keypoints_3d, dtype=np.float64)
    points_3d_cv = points_3d if pose.opencv else geometry.opengl_to_opencv(points_3d)
    axis_length = axis_size * _units_per_relative_scale(points_3d, detection.relative_scale)
    _draw_point_order(image, pose.projected_keypoints_2d)
    _draw_cuboid(image, pose.projected_keypoints_2d)
    _draw_axes(image, points_3d_cv, np.asarray(camera_matrix, dtype=np.float64), axis_length)
    _draw_relative_scale(image, detection.bbox, detection.relative_scale)
    if detection.track_id is not None:
      _draw_track_id(image, detection.bbox, detection.track_id)
  return image
