"""Objectron pose metrics for one matched prediction, and VOC average precision.

Frames and units: 3D boxes are [9, 3] points (centre + 8 Objectron corners, `geometry.UNIT_BOX` order) in
the Objectron OpenGL camera frame, in metres once scaled; 2D boxes are [9, 2] normalised image coordinates
(pixel x / width, pixel y / height). Angles are in degrees unless a name says radians.

Each metric has 21 thresholds (TAO's `centerpose_evaluator`); a prediction "hits" a threshold when its value
is >= it (3D IoU) or <= it (every error). `tao_compatible` selects TAO's exact arithmetic and quirks where
they differ from the corrected behaviour (see docs/differences-from-tao.md, "Evaluation").
"""

import math

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.evaluation import box3d

METRICS = ("scale", "iou", "pixel", "azimuth", "polar", "add", "adds")
NUM_THRESHOLDS = 21
THRESHOLDS = {
    "scale": np.linspace(0.0, 1.0, NUM_THRESHOLDS),  # relative-scale error (sum over axes)
    "iou": np.linspace(0.0, 1.0, NUM_THRESHOLDS),  # 3D IoU
    "pixel": np.linspace(0.0, 0.1, NUM_THRESHOLDS),  # 2D mean projection error, normalised image units
    "azimuth": np.linspace(0.0, 30.0, NUM_THRESHOLDS),  # degrees
    "polar": np.linspace(0.0, 20.0, NUM_THRESHOLDS),  # elevation, degrees
    "add": np.linspace(0.0, 1.0, NUM_THRESHOLDS),  # metres
    "adds": np.linspace(0.0, 1.0, NUM_THRESHOLDS),  # metres
}
HIGHER_IS_BETTER = frozenset({"iou"})
# TAO's values for a prediction it leaves unmatched (they still enter its AP with confidence 0).
UNMATCHED_VALUES = {"scale": 2.0, "iou": 0.0, "pixel": 0.1, "azimuth": 30.0, "polar": 20.0, "add": 1.0,
                    "adds": 1.0}


def symmetry_angles_2d(num_symmetry) -> np.ndarray:
  """[N] radians 2*pi*i/N, i < N: the ground-truth rotations tried by the 2D error (both modes)."""
  return 2.0 * np.pi / num_symmetry * np.arange(num_symmetry)


def symmetry_angles_3d(num_symmetry, tao_compatible=False) -> np.ndarray:
  """[N] radians of the prediction rotations tried by the 3D metrics.

  TAO uses linspace(0, 2*pi, N): both end points, so only N - 1 distinct rotations (and N = 2 tries 0 and
  2*pi, the same box). The corrected set is the N distinct rotations 2*pi*i/N of `symmetry_angles_2d`.
  """
  if tao_compatible:
    return np.linspace(0.0, 2.0 * np.pi, num_symmetry)
  return symmetry_angles_2d(num_symmetry)


def plane_scale(points_3d, plane_center, plane_normal) -> float:
  """Factor that puts a relative-scale box [9, 3] (OpenGL camera frame) on the AR ground plane (TAO).

  The box is assumed to stand on the plane through `plane_center` with normal `plane_normal` (camera frame,
  metres): for the 4 corners lowest along the normal, plane_center.n / corner.n is the factor that moves the
  corner onto the plane along its camera ray; the result is their mean.
  """
  normal = np.asarray(plane_normal, dtype=np.float64)
  dots = np.sort(np.asarray(points_3d, dtype=np.float64)[1:] @ normal)
  return float(np.mean(np.dot(np.asarray(plane_center, dtype=np.float64), normal) / dots[:4]))


def projection_error_2d(predicted_2d, gt_points_3d, gt_object_to_camera, projection_matrix,
                        num_symmetry) -> float:
  """2D mean projection error (MPE) in normalised image units, the best over the object's symmetries.

  For each rotation 2*pi*i/N about the ground truth's own y axis, the ground-truth box is re-projected
  through the Objectron projection matrix and compared with the prediction: the mean L2 distance over the
  8 corners (centre excluded). The minimum over rotations is returned.

  Args:
    predicted_2d: [9, 2] predicted points, normalised image coordinates.
    gt_points_3d: [9, 3] ground-truth `keypoints_3d` (OpenGL camera frame, metres).
    gt_object_to_camera: [4, 4] ground-truth pose (from `location` and `quaternion_xyzw`).
    projection_matrix: [4, 4] `camera_projection_matrix`.
    num_symmetry: N.
  """
  angles = symmetry_angles_2d(num_symmetry)
  rotations = np.stack([geometry.rotation_about_y(angle) for angle in angles])  # [N, 4, 4]
  transforms = gt_object_to_camera @ rotations @ np.linalg.inv(gt_object_to_camera)
  points = np.asarray(gt_points_3d, dtype=np.float64)
  moved = points @ np.swapaxes(transforms[:, :3, :3], -1, -2) + transforms[:, None, :3, 3]  # [N, 9, 3]
  projected = geometry.project_with_projection_matrix(moved.reshape(-1, 3), projection_matrix, 1.0, 1.0)
  offsets = np.asarray(predicted_2d, dtype=np.float64)[1:] - projected.reshape(len(angles), 9, 2)[:, 1:]
  return float(np.linalg.norm(offsets, axis=-1).mean(axis=-1).min())


def viewpoint(boxes) -> np.ndarray:
  """[..., 2] (azimuth, elevation) in degrees of the camera-to-box ray, in the box's own frame.

  The ray is the translation of the least-squares affine map that carries the homogeneous camera-frame box
  [..., 9, 3] onto `UNIT_BOX` scaled by the box's edge lengths (corner 1 to corners 5, 3 and 2), TAO's
  `compute_ray`; azimuth = atan2(z, x), elevation = atan2(y, hypot(x, z)).
  """
  boxes = np.asarray(boxes, dtype=np.float64)
  size = np.linalg.norm(boxes[..., [5, 3, 2], :] - boxes[..., 1:2, :], axis=-1)
  ones = np.ones(boxes.shape[:-1] + (1,))
  object_h = np.concatenate([geometry.UNIT_BOX * size[..., None, :], ones], axis=-1)  # [..., 9, 4]
  camera_h = np.concatenate([boxes, ones], axis=-1)
  gram = np.swapaxes(camera_h, -1, -2) @ camera_h
  try:
    gram_inverse = np.linalg.inv(gram)
  except np.linalg.LinAlgError:
    gram_inverse = np.linalg.pinv(gram)
  transform = np.swapaxes(object_h, -1, -2) @ camera_h @ gram_inverse
  x, y, z = transform[..., 0, 3], transform[..., 1, 3], transform[..., 2, 3]
  return np.stack([np.degrees(np.arctan2(z, x)), np.degrees(np.arctan2(y, np.hypot(x, z)))], axis=-1)


def viewpoint_errors(predicted_boxes, gt_boxes, num_symmetry, tao_compatible=False):
  """Azimuth and elevation ("polar") errors in degrees of boxes [..., 9, 3] against ground truth [..., 9, 3].

  The azimuth error is taken modulo the symmetry period 360/N. TAO then folds only values above 180, which
  for N > 1 leaves an error of period - e instead of e (29 deg instead of 1 deg at N = 12); the corrected
  error is min(e, period - e).
  """
  predicted, truth = viewpoint(predicted_boxes), viewpoint(gt_boxes)
  period = 360.0 / num_symmetry
  azimuth = np.abs(predicted[..., 0] - truth[..., 0]) % period
  if tao_compatible:
    azimuth = np.where(azimuth > 180.0, 360.0 - azimuth, azimuth)
  else:
    azimuth = np.minimum(azimuth, period - azimuth)
  return azimuth, np.abs(predicted[..., 1] - truth[..., 1])


def average_distances(predicted_boxes, gt_boxes):
  """(ADD, ADD-S) of boxes [..., 9, 3] against ground truth [..., 9, 3], in the boxes' unit (metres).

  ADD is the mean distance between corresponding points (centre included); ADD-S the mean distance from
  each predicted point to its nearest ground-truth point.
  """
  predicted = np.asarray(predicted_boxes, dtype=np.float64)
  truth = np.asarray(gt_boxes, dtype=np.float64)
  add = np.linalg.norm(predicted - truth, axis=-1).mean(-1)
  pairwise = np.linalg.norm(predicted[..., :, None, :] - truth[..., None, :, :], axis=-1)
  return add, pairwise.min(-1).mean(-1)


def scale_error(predicted_scale, gt_scale) -> float:
  """Relative-scale error: sum over axes of |p/p_y - g/g_y| / (g/g_y) for sizes [3] (any units)."""
  predicted = np.asarray(predicted_scale, dtype=np.float64)
  truth = np.asarray(gt_scale, dtype=np.float64)
  relative_truth = truth / truth[1]
  return float(np.sum(np.abs(predicted / predicted[1] - relative_truth) / relative_truth))


def evaluate_3d(predicted_boxes, gt_boxes, num_symmetry, tao_compatible=False):
  """3D IoU, viewpoint errors, ADD and ADD-S of predictions against their matched ground truth.

  Each predicted box [9, 3] (metric scale, OpenGL camera frame) is turned about its own up axis through the
  `symmetry_angles_3d`; the rotation with the best 3D IoU (the first on ties) gives every metric. TAO keeps
  the unrotated box's azimuth/elevation and reports ADD = ADD-S = 1.0 when no rotation overlaps the ground
  truth (IoU 0); the corrected mode reports the unrotated box's real values then.

  Args:
    predicted_boxes, gt_boxes: [P, 9, 3].
    num_symmetry: N.
    tao_compatible: TAO's rotation set and no-overlap values.
  Returns:
    dict of [P] arrays: iou, azimuth, polar, add, adds, and rotation (the index of the chosen angle).
  """
  predicted = np.asarray(predicted_boxes, dtype=np.float64).reshape(-1, 9, 3)
  truth = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 9, 3)
  angles = symmetry_angles_3d(num_symmetry, tao_compatible)
  rotated = np.stack([box3d.rotate_about_up_axis(box, angles) for box in predicted])  # [P, R, 9, 3]
  ious = box3d.iou_3d_batch(rotated.reshape(-1, 9, 3), np.repeat(truth, len(angles), axis=0))
  ious = ious.reshape(len(predicted), len(angles))
  best = np.argmax(ious, axis=1)
  rows = np.arange(len(predicted))
  chosen = rotated[rows, best]
  overlaps = ious[rows, best] > 0.0
  if tao_compatible:
    chosen = np.where(overlaps[:, None, None], chosen, predicted)
  azimuth, polar = viewpoint_errors(chosen, truth, num_symmetry, tao_compatible)
  add, adds = average_distances(chosen, truth)
  if tao_compatible:
    add = np.where(overlaps, add, UNMATCHED_VALUES["add"])
    adds = np.where(overlaps, adds, UNMATCHED_VALUES["adds"])
  return {"iou": ious[rows, best], "azimuth": azimuth, "polar": polar, "add": add, "adds": adds,
          "rotation": best}


def hits(metric, values) -> np.ndarray:
  """[21, P] bool: which of `values` [P] meet each threshold of `metric` (NaN meets none)."""
  values = np.asarray(values, dtype=np.float64)[None, :]
  thresholds = THRESHOLDS[metric][:, None]
  with np.errstate(invalid="ignore"):
    return values >= thresholds if metric in HIGHER_IS_BETTER else values <= thresholds


def voc_average_precision(recall, precision) -> float:
  """Area under the precision/recall curve, Pascal VOC 2012 style (all points).

  Recall is padded with 0 and 1, precision with 0 and 0; precision is made non-increasing from the right;
  the area sums delta-recall * precision where recall changes (summed in order, as TAO).
  """
  recall = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
  precision = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  changes = np.flatnonzero(recall[1:] != recall[:-1]) + 1
  terms = (recall[changes] - recall[changes - 1]) * precision[changes]
  return float(np.cumsum(terms)[-1]) if len(terms) else 0.0


def average_precision(hit, confidence, num_gt, tao_compatible=False) -> float:
  """AP of pooled predictions at one threshold.

  Args:
    hit: [P] bool, true positives.
    confidence: [P] ranking scores.
    num_gt: recall denominator.
    tao_compatible: TAO's arithmetic: confidences and cumulative counts in float32, its unstable sort, and
      recall = TP / (num_gt + 1e-15). Otherwise float64 with a stable sort (ties keep insertion order);
      AP is NaN when there is no ground truth.
  Returns:
    AP; 0 when there are no predictions.
  """
  hit = np.asarray(hit, dtype=bool)
  if tao_compatible:
    if hit.size == 0:
      return 0.0
    order = np.argsort(-np.asarray(confidence, dtype=np.float32))
    true_positives = np.cumsum(hit[order].astype(np.float32))
    false_positives = np.cumsum((~hit[order]).astype(np.float32))
    recall = true_positives / np.float32(num_gt + 1e-15)
    detections = true_positives + false_positives
    precision = np.divide(true_positives, detections, out=np.zeros_like(true_positives),
                          where=detections != 0)
    return voc_average_precision(recall, precision)
  if num_gt == 0:
    return math.nan
  if hit.size == 0:
    return 0.0
  order = np.argsort(-np.asarray(confidence, dtype=np.float64), kind="stable")
  true_positives = np.cumsum(hit[order])
  recall = true_positives / num_gt
  precision = true_positives / np.arange(1, hit.size + 1)
  return voc_average_precision(recall, precision)
