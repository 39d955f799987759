"""Objectron evaluation of CenterPose predictions against CenterPose-format ground truth, frame by frame.

Used by evaluate.py and by training's validation:

  evaluator = Evaluator(num_symmetry=1, tao_compatible=False, use_absolute_scale=False)
  for detections, annotation in frames:
    evaluator.add_frame(detections, annotation, image_id=name)
  results = evaluator.finalize()   # results["headline"]["3DIoU_AP@0.5"], results["headline"]["2DMPE"]

The predictions are `inference.detection.Detection`s with a pose: the evaluator reads each one's `score`,
`relative_scale` [3] and its pose's `projected_keypoints_2d` [9, 2] (pixels of the original image) and
`keypoints_3d` [9, 3] (relative scale: the PnP cuboid has the predicted `relative_scale`; the metrics expect the
Objectron OpenGL frame, `evaluate.opencv=False`). TAO's evaluator calls these `score`, `obj_scale`,
`projected_points` and `point_3d_cam`. The annotation is the parsed CenterPose JSON of the image
(`camera_data`, `objects`, `AR_data`).

Two modes (docs/differences-from-tao.md, "Evaluation", explains each difference):
  * default: each ground truth is matched at most once (predictions in score order take their nearest
    ground truth; a later prediction whose nearest ground truth is taken is a false positive), so AP <= 1.
    The recall denominator is the number of matchable ground truths: `visibility` > 0.1, projected centre
    inside the image and in front of the camera. A prediction whose nearest ground truth is not matchable is
    ignored (neither a true nor a false positive) when its corners lie within IGNORE_DISTANCE of that
    object's, and a false positive otherwise (keeping its score and missing every threshold). Every frame
    counts, including frames without matchable ground truth. Symmetric objects use the N distinct rotations
    2*pi*i/N in 2D and 3D, the azimuth error is folded into [0, 180/N] degrees, and boxes that do not
    overlap get their real ADD/ADD-S.
  * tao_compatible=True: TAO's `centerpose_evaluator.Evaluator` number for number, quirks included (every
    prediction takes its nearest ground truth, duplicates all count; unmatched predictions enter AP with
    confidence 0; the recall denominator counts every ground-truth object; frames without a visible object
    are skipped; linspace(0, 2*pi, N) rotations in 3D; float32 AP arithmetic).

In both modes a frame uses its own image size (TAO divides a whole batch by the last JSON's size; pass that
`width`/`height` to reproduce it). Ground truth without `visibility` is treated as fully visible (1.0).
The relative-scale prediction is brought to metres with the AR ground plane as TAO (`AR_data` plane centre
and normal); when `AR_data` is absent or its normal is zero (custom and Isaac Sim data), the predicted box is
scaled so that its height equals the matched ground truth's height (`scale[1]`). `use_absolute_scale=True`
takes the boxes as metric. Each frame's source is in its row (`scale_source`) and counted in `finalize()`'s
`scale_sources`.
"""

import collections
import math
from typing import Sequence

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.evaluation import box3d
from centerpose_jax.evaluation import metrics
from centerpose_jax.inference.detection import Detection

VISIBILITY_THRESHOLD = 0.1  # TAO's `_vis_thresh`
# Default mode: mean 8-corner distance (normalised image units, the largest 2D-error threshold) within which
# a prediction is taken as a detection of an unmatchable object and ignored.
IGNORE_DISTANCE = 0.1


class _GroundTruth:
  """The ground truth of one frame: per-object arrays from a CenterPose annotation dict.

  Attributes:
    points_2d: [G, 9, 2] `projected_cuboid` in normalised image coordinates.
    points_3d: [G, 9, 3] `keypoints_3d`, OpenGL camera frame, metres.
    scales: [G, 3] `scale` (object size, metres).
    visibility: [G] (1.0 where the annotation has no `visibility`).
    object_to_camera: [G, 4, 4] pose from `location` and `quaternion_xyzw` (OpenGL camera frame).
    projection: [4, 4] `camera_projection_matrix`.
    plane: (centre [3], normal [3]) of `AR_data`, or None when absent or the normal is zero.
  """

  def __init__(self, annotation, width, height):
    objects = annotation.get("objects", [])
    size = np.array([width, height], dtype=np.float64)
    self.points_2d = np.array([o["projected_cuboid"] for o in objects], dtype=np.float64).reshape(-1, 9, 2) / size
    self.points_3d = np.array([o["keypoints_3d"] for o in objects], dtype=np.float64).reshape(-1, 9, 3)
    self.scales = np.array([o["scale"] for o in objects], dtype=np.float64).reshape(-1, 3)
    self.visibility = np.array([o.get("visibility", 1.0) for o in objects], dtype=np.float64)
    self.object_to_camera = [geometry.transform_from_pose(o["location"], o["quaternion_xyzw"]) for o in objects]
    self.projection = np.asarray(annotation["camera_data"]["camera_projection_matrix"], dtype=np.float64)
    plane = annotation.get("AR_data") or {}
    centre, normal = plane.get("plane_center"), plane.get("plane_normal")
    usable = centre is not None and normal is not None and np.any(np.asarray(normal, dtype=np.float64) != 0)
    self.plane = (np.asarray(centre, dtype=np.float64), np.asarray(normal, dtype=np.float64)) if usable else None

  def __len__(self):
    return len(self.visibility)

  def visible(self) -> np.ndarray:
    """[G] bool: TAO's per-object test (visibility > 0.1, centre strictly inside the image, in front)."""
    centre = self.points_2d[:, 0]
    inside = np.all((centre > 0.0) & (centre < 1.0), axis=1)
    return (self.visibility > VISIBILITY_THRESHOLD) & inside & (self.points_3d[:, 0, 2] < 0.0)


class Evaluator:
  """Accumulates frames and computes Objectron AP and mean errors (see the module docstring).

  Args:
    num_symmetry: N rotations about the object's up axis treated as the same pose (`evaluate.
      eval_num_symmetry`; 1 for non-symmetric objects).
    tao_compatible: reproduce TAO's numbers and quirks exactly (`evaluate.tao_compatible`).
    use_absolute_scale: predictions are already metric (`dataset.use_absolute_scale`); otherwise they are
      scaled with the AR ground plane.
  """

  def __init__(self, num_symmetry=1, tao_compatible=False, use_absolute_scale=False):
    if num_symmetry < 1:
      raise ValueError(f"num_symmetry must be >= 1, got {num_symmetry}")
    self.num_symmetry = int(num_symmetry)
    self.tao_compatible = bool(tao_compatible)
    self.use_absolute_scale = bool(use_absolute_scale)
    self.reset()

  @classmethod
  def from_config(cls, config):
    """Evaluator for a whole config (`evaluate.eval_num_symmetry`, `evaluate.tao_compatible`,
    `dataset.use_absolute_scale`)."""
    return cls(num_symmetry=config.evaluate.eval_num_symmetry, tao_compatible=config.evaluate.tao_compatible,
               use_absolute_scale=config.dataset.use_absolute_scale)

  def reset(self):
    """Forget every frame added so far."""
    self._rows = []  # one per frame, see add_frame
    self._values = {name: [] for name in metrics.METRICS}  # per scored prediction, pooled over frames
    self._confidence = []
    self._num_gt = 0

  def add_frame(self, predictions: Sequence[Detection], annotation, *, width=None, height=None,
                image_id=None) -> dict:
    """Scores one frame's predictions against its ground truth.

    Args:
      predictions: the frame's `Detection`s, each with a pose (see the module docstring). Not modified.
      annotation: the frame's parsed CenterPose JSON dict.
      width, height: image size in pixels for normalising the poses' `projected_keypoints_2d` and the ground truth's
        `projected_cuboid`; default `camera_data.width`/`height`.
      image_id: a name for the per-image rows (default: the frame's index).
    Returns:
      The frame's row, as in finalize()'s per_image: image_id, width, height, num_gt (objects in the JSON),
      num_gt_counted (its share of the recall denominator), evaluated (False when TAO mode skips it),
      scale_source (how predictions are brought to metres: "absolute", "ar_plane" or "gt_height"),
      predictions (one record per prediction, in input order).
    """
    if any(prediction.pose is None for prediction in predictions):
      raise ValueError("the evaluator needs each detection's pose (PnP)")
    camera = annotation["camera_data"]
    width = float(camera["width"] if width is None else width)
    height = float(camera["height"] if height is None else height)
    truth = _GroundTruth(annotation, width, height)
    row = {"image_id": len(self._rows) if image_id is None else image_id, "width": width, "height": height,
           "num_gt": len(truth), "num_gt_counted": 0, "evaluated": True, "scale_source": self._scale_source(truth),
           "predictions": []}
    visible = truth.visible()
    if self.tao_compatible and not visible.any():
      row["evaluated"] = False  # TAO skips frames without a visible object, predictions included
    else:
      row["num_gt_counted"] = len(truth) if self.tao_compatible else int(visible.sum())
      records = [self._match(index, prediction, truth, width, height)
                 for index, prediction in enumerate(predictions)]
      if not self.tao_compatible:
        self._resolve_duplicates(records, visible)
      self._score_matched([r for r in records if r["status"] == "matched"], predictions, truth)
      row["predictions"] = records
    self._add_row(row)
    return _public_row(row)

  def _add_row(self, row) -> None:
    """Adds one scored frame (a row of `add_frame`) to the pooled values."""
    self._rows.append(row)
    self._num_gt += row["num_gt_counted"]
    for record in row["predictions"]:
      if record["status"] == "ignored":
        continue
      matched = record["status"] == "matched"
      values = record["values"] if matched else self._miss_values()
      for name in metrics.METRICS:
        self._values[name].append(values[name])
      self._confidence.append(0.0 if self.tao_compatible and not matched else record["score"])

  def frames(self) -> list:
    """The scored frames added so far, in order (picklable): another Evaluator with the same settings that
    `add_scored_frames` them gives the same results (how processes that scored shares of a dataset merge)."""
    return list(self._rows)

  def add_scored_frames(self, frames) -> None:
    """Adds frames scored by another Evaluator with the same settings (its `frames()`), in order."""
    for row in frames:
      self._add_row(row)

  def _match(self, index, prediction, truth, width, height) -> dict:
    """A prediction's record with its nearest ground truth (8-corner 2D distance) and status."""
    points_2d = np.asarray(prediction.pose.projected_keypoints_2d, dtype=np.float64).reshape(9, 2) / [width, height]
    record = {"index": index, "score": float(prediction.score), "matched_gt": -1, "status": "unmatched",
              "points_2d": points_2d}
    if len(truth) == 0:
      return record
    offsets = truth.points_2d[:, 1:] - points_2d[1:]  # [G, 8, 2]
    nearest = int(np.argmin(np.linalg.norm(offsets.reshape(len(truth), -1), axis=1)))
    record["nearest_gt"] = nearest
    record["nearest_distance"] = float(np.linalg.norm(offsets[nearest], axis=1).mean())
    if truth.visibility[nearest] < VISIBILITY_THRESHOLD:
      return record  # TAO: unmatched; the default mode marks it ignored in _resolve_duplicates
    record["matched_gt"] = nearest
    record["status"] = "matched"
    return record

  @staticmethod
  def _resolve_duplicates(records, visible):
    """Default mode: one prediction per ground truth, by descending score; see the module docstring."""
    taken = set()
    for record in sorted(records, key=lambda r: -r["score"]):
      nearest = record.get("nearest_gt")
      if nearest is None:
        continue  # a frame without ground truth: a false positive
      if not visible[nearest]:
        ignored = record["nearest_distance"] <= IGNORE_DISTANCE
        record.update(status="ignored" if ignored else "unmatched", matched_gt=-1)
      elif nearest in taken:
        record.update(status="duplicate", matched_gt=-1)
      else:
        taken.add(nearest)
        record.update(status="matched", matched_gt=nearest)

  def _score_matched(self, records, predictions, truth):
    """Fills `values` (every metric) and the scale used for the matched records of one frame."""
    if not records:
      return
    boxes = []
    for record in records:
      prediction, gt = predictions[record["index"]], record["matched_gt"]
      box = np.asarray(prediction.pose.keypoints_3d, dtype=np.float64).reshape(9, 3)
      source = self._scale_source(truth)
      if source == "absolute":
        factor = 1.0
      elif source == "ar_plane":
        factor = metrics.plane_scale(box, *truth.plane)
      else:
        factor = truth.scales[gt, 1] / box3d.box_size(box)[1]
      boxes.append(box * factor)
      record.update(scale_factor=float(factor), scale_source=source, values={
          "pixel": metrics.projection_error_2d(record["points_2d"], truth.points_3d[gt],
                                               truth.object_to_camera[gt], truth.projection, self.num_symmetry),
          "scale": metrics.scale_error(prediction.relative_scale, truth.scales[gt])})
    gt_boxes = truth.points_3d[[r["matched_gt"] for r in records]]
    results_3d = metrics.evaluate_3d(np.stack(boxes), gt_boxes, self.num_symmetry, self.tao_compatible)
    for i, record in enumerate(records):
      record["values"].update({name: float(results_3d[name][i]) for name in ("iou", "azimuth", "polar", "add",
                                                                             "adds")})
      record["rotation"] = int(results_3d["rotation"][i])

  def _scale_source(self, truth) -> str:
    """How a frame's predictions are brought to metres (see the module docstring)."""
    if self.use_absolute_scale:
      return "absolute"
    return "ar_plane" if truth.plane is not None else "gt_height"

  def _miss_values(self) -> dict:
    """Metric values of a prediction that counts as a miss: TAO's worst values, or NaN (never a hit)."""
    if self.tao_compatible:
      return dict(metrics.UNMATCHED_VALUES)
    return {name: math.nan for name in metrics.METRICS}

  def finalize(self) -> dict:
    """AP per metric and threshold, mean errors, headline numbers and per-image rows of all frames.

    Returns a dict:
      ap: {metric: [21] AP}; thresholds: {metric: [21]} (metrics.METRICS order: scale, iou, pixel, azimuth,
        polar, add, adds);
      means: {metric: mean over matched predictions} (TAO gives 0 when nothing matched, the default NaN);
      headline: {"3DIoU_AP@0.5": ap["iou"][10], "2DMPE": means["pixel"]};
      num_matched, num_gt (recall denominator), num_predictions (scored), num_images, num_images_evaluated;
      scale_sources: {"ar_plane" | "gt_height" | "absolute": evaluated frames whose predictions were brought
        to metres that way};
      settings: {num_symmetry, tao_compatible, use_absolute_scale};
      per_image: the rows of add_frame, with each prediction's record (status, matched_gt, score,
        scale_factor, scale_source, rotation and the metric values of matched predictions).
    """
    confidence = np.asarray(self._confidence, dtype=np.float64)
    ap, means = {}, {}
    matched = [record for row in self._rows for record in row["predictions"] if record["status"] == "matched"]
    for name in metrics.METRICS:
      hits = metrics.hits(name, self._values[name])
      ap[name] = [metrics.average_precision(hit, confidence, self._num_gt, self.tao_compatible) for hit in hits]
      total = sum(record["values"][name] for record in matched)
      if matched:
        means[name] = total / len(matched)
      else:
        means[name] = 0.0 if self.tao_compatible else math.nan
    return {
        "ap": ap,
        "thresholds": {name: metrics.THRESHOLDS[name].tolist() for name in metrics.METRICS},
        "means": means,
        "headline": {"3DIoU_AP@0.5": ap["iou"][10], "2DMPE": means["pixel"]},
        "num_matched": len(matched),
        "num_gt": self._num_gt,
        "num_predictions": len(confidence),
        "num_images": len(self._rows),
        "num_images_evaluated": sum(row["evaluated"] for row in self._rows),
        "scale_sources": dict(collections.Counter(row["scale_source"] for row in self._rows if row["evaluated"])),
        "settings": {"num_symmetry": self.num_symmetry, "tao_compatible": self.tao_compatible,
                     "use_absolute_scale": self.use_absolute_scale},
        "per_image": [_public_row(row) for row in self._rows],
    }


def _public_row(row) -> dict:
  """A per-image row without the working fields (normalised points, nearest-GT bookkeeping)."""
  predictions = []
  for record in row["predictions"]:
    public = {key: record[key] for key in ("index", "score", "status", "matched_gt")}
    if record["status"] == "matched":
      public.update(scale_factor=record["scale_factor"], scale_source=record["scale_source"],
                    rotation=record["rotation"], **record["values"])
    predictions.append(public)
  return dict(row, predictions=predictions)
