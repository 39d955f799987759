"""Multi-object tracking of CenterPose detections over video frames, with a filtered pose per track.

Per frame (`Tracker.update`):
  1. every track's `PoseFilter` is predicted to the frame;
  2. tracks and detections are associated by the Hungarian algorithm on
       cost = (1 - IoU of the 2D cuboids) + pose_weight * (|t_det - t_track| / |t_track| + angle / pi),
     where the 2D cuboid is the convex hull of the 8 projected corners (the track's predicted pose against the
     detection's PnP pose; the track's last detection's when a predicted corner is behind the camera), and pairs
     whose IoU is below `min_iou` are never associated;
  3. an associated track is updated with the detection's pose, unless the pose is an outlier (squared
     Mahalanobis distance above `outlier_gate`: e.g. a corner ordering flipped by the network), in which case
     only the track's hit is counted; after `outlier_frames` outliers in a row that agree with each other
     (each within the gate of the one before) the filter restarts from the detection (the track, not the
     detections, was wrong);
  4. an unassociated detection starts a tentative track; a tentative track is confirmed, and given the next
     `track_id` (1, 2, ... per video), after `min_hits` consecutive associated frames (at once during the
     video's first `min_hits` frames, as SORT); a tentative track that misses a frame is dropped, a confirmed
     one after more than `max_age` frames without a detection.
A frame's output is the confirmed tracks associated in it, each with its raw detection and its filtered pose.

Detections are `detection.Detection`s with a pose, in either frame (`Pose.frame`); the filters run in the OpenCV
frame and each filtered pose is given back in the frame and unit of the track's detection.
"""

import dataclasses
import math
from typing import List, Optional

import cv2
import numpy as np
from scipy import optimize

from centerpose_jax import geometry
from centerpose_jax.inference import pose_filter
from centerpose_jax.inference.detection import Detection
from centerpose_jax.inference.detection import Pose

# Cost of a gated pair in the assignment problem (any value above every real cost).
_GATED = 1e6


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
  """The `inference.tracking` options (docs/configuration.md), minus `enabled`.

  Attributes:
    max_age: frames without a detection after which a confirmed track is dropped.
    min_hits: consecutive associated frames that confirm a track.
    min_iou: smallest 2D cuboid IoU of an associated pair.
    pose_weight: weight of the pose distance in the association cost.
    outlier_gate: squared Mahalanobis distance above which a detection's pose does not update its track (0:
      every pose updates).
    outlier_frames: consecutive agreeing outlier poses after which a track's filter restarts from the last.
    keypoint_noise: standard deviation of a keypoint coordinate, in cells of the network's output grid.
    noise: the filter's noise levels.
  """
  max_age: int
  min_hits: int
  min_iou: float
  pose_weight: float
  outlier_gate: float
  outlier_frames: int
  keypoint_noise: float
  noise: pose_filter.FilterNoise

  @classmethod
  def from_config(cls, tracking_config) -> "TrackerSettings":
    """Settings from the `inference.tracking` config section."""
    return cls(max_age=int(tracking_config.max_age), min_hits=int(tracking_config.min_hits),
               min_iou=float(tracking_config.min_iou), pose_weight=float(tracking_config.pose_weight),
               outlier_gate=float(tracking_config.outlier_gate),
               outlier_frames=int(tracking_config.outlier_frames),
               keypoint_noise=float(tracking_config.keypoint_noise),
               noise=pose_filter.FilterNoise(
                   translation_acceleration=float(tracking_config.translation_acceleration),
                   rotation_acceleration=float(tracking_config.rotation_acceleration),
                   scale_acceleration=float(tracking_config.scale_acceleration),
                   scale_measurement=float(tracking_config.scale_noise)))


@dataclasses.dataclass(frozen=True, eq=False)
class TrackedObject:
  """One confirmed track in one frame.

  Attributes:
    detection: the frame's raw detection associated with the track (its PnP pose), with the track's
      `track_id` (1, 2, ... in order of confirmation).
    filtered_pose: the track's filtered pose, in the detection's frame and unit (`keypoints_3d` [9, 3] and
      `projected_keypoints_2d` [9, 2] pixels are the filtered cuboid's centre and corners).
    filtered_scale: [3] the track's filtered relative scale.
  """
  detection: Detection
  filtered_pose: Pose
  filtered_scale: np.ndarray

  @property
  def track_id(self) -> int:
    return self.detection.track_id

  def as_detection(self) -> Detection:
    """The detection with the track's filtered pose and scale (what a tracked video shows)."""
    return dataclasses.replace(self.detection, relative_scale=self.filtered_scale, pose=self.filtered_pose)


@dataclasses.dataclass
class _Measurement:
  """A detection's pose in the OpenCV frame and its covariance over (dtheta, t)."""
  rotation: np.ndarray
  translation: np.ndarray
  scale: np.ndarray
  covariance: np.ndarray
  hull: np.ndarray  # [K, 1, 2] float32 convex hull of the projected corners, pixels


@dataclasses.dataclass
class _Track:
  filter: pose_filter.PoseFilter
  frame: int  # the frame the filter's state refers to
  hull: np.ndarray  # the 2D cuboid hull of its last detection
  hits: int = 1  # consecutive associated frames
  misses: int = 0  # consecutive frames without a detection
  outliers: int = 0  # consecutive rejected poses that agree with each other
  outlier: Optional[_Measurement] = None  # the last of them
  track_id: Optional[int] = None  # set when confirmed


def _agree(first, second, gate) -> bool:
  """Whether two measured poses are within `gate` (squared Mahalanobis distance, summed covariances)."""
  residual = pose_filter.pose_residual(first.rotation, first.translation, second.rotation, second.translation)
  return float(residual @ np.linalg.solve(first.covariance + second.covariance, residual)) <= gate


def _hull(pixels) -> np.ndarray:
  return cv2.convexHull(np.asarray(pixels, dtype=np.float32).reshape(-1, 1, 2))


def _hull_iou(hull_a, hull_b) -> float:
  """IoU of two convex polygons ([K, 1, 2] float32, pixels)."""
  area_a, area_b = cv2.contourArea(hull_a), cv2.contourArea(hull_b)
  if area_a <= 0 or area_b <= 0:
    return 0.0
  intersection, _ = cv2.intersectConvexConvex(hull_a, hull_b)
  return float(intersection / (area_a + area_b - intersection))


class Tracker:
  """Tracks of one video (see the module docstring).

  Args:
    settings: `TrackerSettings`.
    camera_k: [3, 3] intrinsics of the video, pixels.
    fps: frames per second (the filters' time step is 1 / fps per frame).
    keypoint_sigma: standard deviation of a keypoint coordinate in pixels of the video's frames.
    points_per_corner: keypoints per corner that PnP used (2 for `pnp_keypoints` "displacement+heatmap").
  """

  def __init__(self, settings: TrackerSettings, camera_k, fps, keypoint_sigma, *, points_per_corner=1):
    self.settings = settings
    self.camera_k = np.asarray(camera_k, dtype=np.float64)
    self.frame_seconds = 1.0 / float(fps)
    self.keypoint_sigma = float(keypoint_sigma)
    self.points_per_corner = points_per_corner
    self.tracks: List[_Track] = []
    self.frames_seen = 0
    self.next_id = 1

  @classmethod
  def for_video(cls, config, camera_k, fps, frame_shape) -> "Tracker":
    """The tracker that `inference.tracking` configures for a video of frames [H, W, ...] shaped `frame_shape`.

    A keypoint's noise of `keypoint_noise` output-grid cells is `keypoint_noise * max(H, W) / output_res`
    pixels of the frame (the letterbox maps the longer side onto the grid).
    """
    settings = TrackerSettings.from_config(config.inference.tracking)
    cell = max(frame_shape[:2]) / config.dataset.output_res
    return cls(settings, camera_k, fps, settings.keypoint_noise * cell,
               points_per_corner=2 if config.inference.pnp_keypoints == "displacement+heatmap" else 1)

  def update(self, frame_index: int, detections: List[Detection]) -> List[TrackedObject]:
    """Advances the tracks to `frame_index` with its detections (each with a pose); returns the frame's
    confirmed, associated tracks in `track_id` order."""
    self.frames_seen += 1
    for track in self.tracks:
      track.filter.predict((frame_index - track.frame) * self.frame_seconds)
      track.frame = frame_index
    measurements = [self._measurement(detection) for detection in detections]
    pairs = self._associate(measurements)
    associated = {}
    for track_index, detection_index in pairs:
      track, measurement = self.tracks[track_index], measurements[detection_index]
      self._correct(track, measurement)
      track.hull = measurement.hull
      track.hits += 1
      track.misses = 0
      associated[track_index] = detection_index
    kept = []
    for index, track in enumerate(self.tracks):
      if index not in associated:
        track.misses += 1
        track.hits = 0
        if track.track_id is None or track.misses > self.settings.max_age:
          continue
      kept.append((track, associated.get(index)))
    taken = set(associated.values())
    for index, measurement in enumerate(measurements):
      if index not in taken:
        kept.append((self._start(measurement, frame_index), index))
    self.tracks = [track for track, _ in kept]

    output = []
    for track, detection_index in kept:
      if detection_index is None:
        continue
      if track.track_id is None and (track.hits >= self.settings.min_hits
                                     or self.frames_seen <= self.settings.min_hits):
        track.track_id = self.next_id
        self.next_id += 1
      if track.track_id is not None:
        detection = detections[detection_index]
        output.append(TrackedObject(dataclasses.replace(detection, track_id=track.track_id),
                                    self._filtered_pose(track, detection.pose), track.filter.scale.copy()))
    return sorted(output, key=lambda tracked: tracked.track_id)

  def _measurement(self, detection: Detection) -> _Measurement:
    pose = detection.pose
    if pose is None:
      raise ValueError("tracking needs each detection's pose (inference.use_pnp)")
    rotation = geometry.quaternion_to_matrix(pose.quaternion_xyzw)
    translation = np.asarray(pose.location, dtype=np.float64)
    if not pose.opencv:
      rotation = geometry.rotation_opengl_to_opencv(rotation)
      translation = geometry.opengl_to_opencv(translation)
    scale = np.asarray(detection.relative_scale, dtype=np.float64)
    covariance = pose_filter.pnp_covariance(rotation, translation, scale, self.camera_k, self.keypoint_sigma,
                                            self.points_per_corner)
    hull = _hull(np.asarray(pose.projected_keypoints_2d)[1:])
    return _Measurement(rotation, translation, scale, covariance, hull)

  def _predicted_hull(self, track) -> np.ndarray:
    """The convex hull of the track's predicted corners in pixels; the hull of its last detection's projected
    corners when a predicted corner is not in front of the camera."""
    state = track.filter
    corners = geometry.cuboid_vertices(state.scale)[1:] @ state.rotation.T + state.translation
    if (corners[:, 2] <= 0).any():
      return track.hull
    return _hull(geometry.project_with_intrinsics(corners, self.camera_k))

  def _associate(self, measurements) -> List[tuple]:
    """(track index, detection index) pairs of the minimum-cost assignment, gated pairs left out."""
    if not self.tracks or not measurements:
      return []
    cost = np.full((len(self.tracks), len(measurements)), _GATED)
    for i, track in enumerate(self.tracks):
      hull = self._predicted_hull(track)
      state = track.filter
      for j, measurement in enumerate(measurements):
        iou = _hull_iou(hull, measurement.hull)
        if iou < self.settings.min_iou or iou == 0.0:
          continue
        distance = (np.linalg.norm(measurement.translation - state.translation)
                    / max(np.linalg.norm(state.translation), 1e-9)
                    + geometry.rotation_angle(state.rotation, measurement.rotation) / math.pi)
        cost[i, j] = (1.0 - iou) + self.settings.pose_weight * distance
    rows, columns = optimize.linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, columns) if cost[i, j] < _GATED]

  def _correct(self, track, measurement) -> None:
    """Updates the track's filter with the measurement, or counts it as an outlier (see the module docstring)."""
    state = track.filter
    gate = self.settings.outlier_gate
    if gate > 0 and state.mahalanobis(measurement.rotation, measurement.translation, measurement.covariance) > gate:
      agrees = track.outlier is not None and _agree(track.outlier, measurement, gate)
      track.outliers = track.outliers + 1 if agrees else 1
      track.outlier = measurement
      if track.outliers >= self.settings.outlier_frames:
        track.filter = self._new_filter(measurement)
        track.outliers, track.outlier = 0, None
      return
    track.outliers, track.outlier = 0, None
    state.update(measurement.rotation, measurement.translation, measurement.scale, measurement.covariance)

  def _new_filter(self, measurement) -> pose_filter.PoseFilter:
    return pose_filter.PoseFilter(measurement.rotation, measurement.translation, measurement.scale,
                                  measurement.covariance, self.settings.noise)

  def _start(self, measurement, frame_index) -> _Track:
    return _Track(filter=self._new_filter(measurement), frame=frame_index, hull=measurement.hull)

  def _filtered_pose(self, track, detected: Pose) -> Pose:
    """The track's pose as `TrackedObject.filtered_pose`, in the frame and unit of its `detected` pose."""
    state = track.filter
    points = geometry.cuboid_vertices(state.scale) @ state.rotation.T + state.translation  # [9, 3] OpenCV
    projected = geometry.project_with_intrinsics(points, self.camera_k)
    rotation, location = state.rotation, state.translation
    if not detected.opencv:
      rotation = geometry.rotation_opencv_to_opengl(rotation)
      location = geometry.opencv_to_opengl(location)
      points = geometry.opencv_to_opengl(points)
    return Pose(location=location, quaternion_xyzw=geometry.matrix_to_quaternion(rotation),
                projected_keypoints_2d=projected, keypoints_3d=points, frame=detected.frame, unit=detected.unit)
