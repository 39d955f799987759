"""Per-image post-processing of decoded detections (TAO's TransformOutputs, MergeOutput and PnPProcess).

Output-grid detections -> image pixels (inverse letterbox affine) -> score threshold -> Gaussian soft-NMS ->
PnP on the predicted relative-scale cuboid. numpy and OpenCV only; runs on the host after the jitted decoder.
"""

import functools
from typing import List

import numpy as np

from centerpose_jax.data import transforms
from centerpose_jax.inference import pnp
from centerpose_jax.inference.detection import Detection
# The package exports the `decode` function under the module's name, so import the constant itself.
from centerpose_jax.inference.decode import MISSING

# Which keypoints feed PnP (`inference.pnp_keypoints`).
PNP_KEYPOINTS = ("displacement", "displacement+heatmap")
SOFT_NMS_SIGMA = 0.5


def to_image_pixels(points, center, scale, output_size) -> np.ndarray:
  """[N, 2] output-grid points mapped back to pixels of the original image.

  Inverts the letterbox affine of (center, scale, rotation 0, output_size). Points equal to
  (-10000, -10000) (missing keypoints) are returned unchanged.

  Args:
    points: [N, 2] (x, y) in output-grid pixels.
    center: [2] (x, y) image pixels of the letterbox centre (the image centre at inference).
    scale: letterbox side in image pixels (max(H, W) at inference).
    output_size: (width, height) of the output grid, e.g. (128, 128).
  """
  points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
  matrix = transforms.affine_transform_matrix(center, scale, 0.0, output_size, inverse=True)
  mapped = np.asarray(transforms.apply_affine(points, matrix), dtype=np.float64)
  missing = np.all(points == MISSING, axis=1)
  return np.where(missing[:, None], points, mapped)


def _pairwise_iou(boxes) -> np.ndarray:
  """[N, N] IoU between boxes [N, 4] (x1, y1, x2, y2) pixels, with TAO's +1-pixel sizes.

  Pairs that do not overlap (intersection width or height <= 0) get 0.
  """
  x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
  inter_w = np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]) + 1
  inter_h = np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]) + 1
  overlapping = (inter_w > 0) & (inter_h > 0)
  intersection = np.where(overlapping, inter_w * inter_h, 0.0)
  areas = (x2 - x1 + 1) * (y2 - y1 + 1)
  union = np.where(overlapping, areas[:, None] + areas[None, :] - intersection, 1.0)
  return intersection / union


def soft_nms(boxes, scores, threshold, sigma=SOFT_NMS_SIGMA):
  """Gaussian soft-NMS (TAO's `soft_nms(method=2)`).

  Repeatedly takes the highest-scoring remaining box, multiplies every other remaining box's score by
  exp(-IoU^2 / sigma) (IoU with +1-pixel sizes) and drops boxes whose score falls below `threshold`.

  Args:
    boxes: [N, 4] (x1, y1, x2, y2) pixels.
    scores: [N] scores.
    threshold: scores below it after decay are discarded.
    sigma: Gaussian width.

  Returns:
    (order [M] int indices into the inputs in selection order, scores [M] the decayed scores).
    Among exactly equal scores the earlier box is taken first.
  """
  boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
  scores = np.asarray(scores, dtype=np.float64).reshape(-1).copy()
  decay = np.exp(-_pairwise_iou(boxes) ** 2 / sigma)  # [N, N]
  remaining = np.ones(len(scores), dtype=bool)
  order, kept = [], []
  while remaining.any():
    best = int(np.argmax(np.where(remaining, scores, -np.inf)))
    order.append(best)
    kept.append(scores[best])
    remaining[best] = False
    scores *= decay[best]
    remaining &= scores >= threshold
  return np.asarray(order, dtype=np.int64), np.asarray(kept, dtype=np.float64)


def metric_factor(relative_scale, object_height: float) -> float:
  """Metres per relative-scale unit of a detection whose real height is `object_height` metres (> 0).

  PnP fits a cuboid of size `relative_scale` (x, y, z), so its pose is in units where the box is
  `relative_scale[1]` high; scaling by object_height / relative_scale[1] makes it metric (projections are
  unchanged). Returns 0 when the predicted height is not positive (no metric pose exists).
  """
  height = float(relative_scale[1])
  return object_height / height if height > 0 else 0.0


def postprocess_detections(decoded, center, scale, output_size, camera_matrix, *, threshold, opencv,
                           use_pnp=True, pnp_keypoints="displacement", object_height=0.0) -> List[Detection]:
  """Detections of one image, in image pixels, with their 6-DoF pose.

  Args:
    decoded: `decode`'s outputs for one image as numpy arrays without the batch axis: `bboxes` [K, 4],
      `scores` [K, 1], `obj_scale` [K, 3], `kps_displacement_mean` [K, 16], `kps_heatmap_mean` [K, 16]
      (output-grid pixels).
    center: [2] letterbox centre in image pixels; scale: letterbox side in pixels; output_size: (w, h) of
      the output grid (see `to_image_pixels`).
    camera_matrix: [3, 3] intrinsics K of the image, pixels (unused, may be None, without PnP).
    threshold: keep detections with score > threshold (`inference.visualization_threshold`); also the
      soft-NMS drop threshold.
    opencv: pose in the OpenCV camera frame (True) or the Objectron OpenGL frame (False).
    use_pnp: solve the pose; detections whose PnP fails are dropped, as TAO. If False, each `pose` is None.
    pnp_keypoints: "displacement" (the 8 regressed corners: TAO's and Isaac ROS's effective behaviour) or
      "displacement+heatmap" (16 points, each corner's regressed and heatmap keypoint, as NVlabs; missing
      heatmap keypoints are skipped).
    object_height: 0 keeps TAO's relative poses; > 0 is the object's real height in metres, and each pose's
      `location` and `keypoints_3d` are scaled to metres (`metric_factor`, `Pose.unit` METRE; a detection with
      a non-positive predicted height is dropped, as a failed PnP).

  Returns:
    `detection.Detection`s in soft-NMS order (`id` "object_<n>", n counting the returned detections), each
    with its `pnp.solve_pnp` pose in the frame chosen by `opencv` when `use_pnp`.
  """
  if pnp_keypoints not in PNP_KEYPOINTS:
    raise ValueError(f"pnp_keypoints must be one of {PNP_KEYPOINTS}, got {pnp_keypoints!r}")
  scores = np.asarray(decoded["scores"], dtype=np.float64).reshape(-1)
  candidates = np.flatnonzero(scores > threshold)
  if candidates.size == 0:
    return []
  to_pixels = functools.partial(to_image_pixels, center=center, scale=scale, output_size=output_size)
  bboxes = to_pixels(np.asarray(decoded["bboxes"])[candidates].reshape(-1, 2)).reshape(-1, 4)
  order, kept_scores = soft_nms(bboxes, scores[candidates], threshold)

  # Keypoints of the kept detections, mapped to pixels in one go: [M, 8, 2] each.
  kept = candidates[order]
  displacement = to_pixels(np.asarray(decoded["kps_displacement_mean"])[kept].reshape(-1, 2)).reshape(
      len(kept), -1, 2)
  heatmap = to_pixels(np.asarray(decoded["kps_heatmap_mean"])[kept].reshape(-1, 2)).reshape(len(kept), -1, 2)
  relative_scales = np.asarray(decoded["obj_scale"], dtype=np.float64)[kept]
  if pnp_keypoints == "displacement":
    pnp_points = displacement
  else:  # per corner: displacement then heatmap keypoint, [M, 16, 2]
    pnp_points = np.stack([displacement, heatmap], axis=2).reshape(len(kept), -1, 2)

  detections = []
  for i, score in enumerate(kept_scores):
    pose = None
    if use_pnp:
      pose = pnp.solve_pnp(pnp_points[i], camera_matrix, relative_scales[i], opencv=opencv)
      factor = metric_factor(relative_scales[i], object_height) if object_height > 0 else 1.0
      if pose is None or factor == 0.0:
        continue
      if object_height > 0:
        pose = pose.in_metres(factor)
    detections.append(Detection(id=f"object_{len(detections)}", score=float(score), bbox=bboxes[order[i]],
                                keypoints_2d=displacement[i], relative_scale=relative_scales[i], pose=pose))
  return detections
