"""The tracker: identities through missed detections, track ageing and confirmation, frames of the poses."""

import numpy as np
import pytest

from centerpose_jax import config_validation
from centerpose_jax import geometry
from centerpose_jax.inference import pose_filter
from centerpose_jax.inference import tracking
from configs import default
from tracking_helpers import CAMERA_K
from tracking_helpers import detection

FPS = 30.0
# Two objects side by side, drifting slowly to the right.
LEFT, RIGHT = np.array([-1.2, 0.0, 6.0]), np.array([1.2, 0.2, 6.5])
DRIFT = np.array([0.01, 0.0, 0.0])  # per frame
ROTATION = geometry.so3_exp([0.2, 0.7, 0.0])


def _settings(max_age=3, min_hits=3):
  return tracking.TrackerSettings(
      max_age=max_age, min_hits=min_hits, min_iou=0.1, pose_weight=1.0, outlier_gate=30.0, outlier_frames=3,
      keypoint_noise=1.0,
      noise=pose_filter.FilterNoise(translation_acceleration=2.0, rotation_acceleration=1.0,
                                    scale_acceleration=0.1, scale_measurement=0.05))


def _tracker(**kwargs):
  return tracking.Tracker(_settings(**kwargs), CAMERA_K, FPS, keypoint_sigma=1.0)


def _frame_detections(frame, present):
  """Detections of the objects named in `present` ("left", "right") at `frame`, right first."""
  poses = {"left": LEFT + frame * DRIFT, "right": RIGHT + frame * DRIFT}
  return [detection(ROTATION, poses[name]) for name in ("right", "left") if name in present]


def _ids_by_object(tracked):
  """{"left" or "right": track_id} of a frame's output (the object is told by its x)."""
  return {("left" if t.detection.pose.location[0] < 0 else "right"): t.track_id for t in tracked}


def test_identities_are_kept_through_a_missed_detection():
  tracker = _tracker()
  outputs = []
  for frame in range(12):
    present = ("right",) if frame in (6, 7) else ("left", "right")
    outputs.append(_ids_by_object(tracker.update(frame, _frame_detections(frame, present))))
  assert outputs[0] == {"right": 1, "left": 2}  # confirmed at once in the video's first frames
  assert outputs[6] == outputs[7] == {"right": 1}  # a missed object is not reported...
  assert all(output == {"right": 1, "left": 2} for i, output in enumerate(outputs) if i not in (6, 7))  # ...nor renamed


def test_a_track_is_dropped_after_max_age_frames_without_a_detection():
  max_age = 3
  for absent, same_id in ((max_age, True), (max_age + 1, False)):
    tracker = _tracker(max_age=max_age)
    ids = []
    for frame in range(20):
      present = ("right",) if 5 <= frame < 5 + absent else ("left", "right")
      ids.append(_ids_by_object(tracker.update(frame, _frame_detections(frame, present))).get("left"))
    back = 5 + absent
    if same_id:
      assert ids[back:] == [2] * (20 - back)
    else:  # a new track: tentative for min_hits - 1 frames, then the next id
      assert ids[back:back + 2] == [None, None] and ids[back + 2:] == [3] * (20 - back - 2)


def test_a_new_track_is_reported_after_min_hits_and_a_tentative_one_dies_on_a_miss():
  tracker = _tracker(min_hits=3)
  for frame in range(5):
    tracker.update(frame, _frame_detections(frame, ("right",)))
  reported = []
  for frame in range(5, 12):
    present = ("right",) if frame == 7 else ("left", "right")  # left appears at 5, is missed at 7
    reported.append(_ids_by_object(tracker.update(frame, _frame_detections(frame, present))).get("left"))
  # 5, 6: tentative; 7: missed, so dropped; 8, 9: tentative again; 10: confirmed as track 2.
  assert reported == [None, None, None, None, None, 2, 2]


@pytest.mark.parametrize("opencv", [True, False])
def test_noise_free_detections_give_back_their_own_pose_in_their_frame(opencv):
  tracker = tracking.Tracker(_settings(), CAMERA_K, FPS, keypoint_sigma=1.0)
  for frame in range(10):
    truth = detection(ROTATION, LEFT + frame * DRIFT, opencv=opencv)
    (tracked,) = tracker.update(frame, [truth])
  filtered = tracked.filtered_pose
  np.testing.assert_allclose(filtered.location, truth.pose.location, atol=1e-4)
  np.testing.assert_allclose(filtered.keypoints_3d, truth.pose.keypoints_3d, atol=1e-4)
  np.testing.assert_allclose(filtered.projected_keypoints_2d, truth.pose.projected_keypoints_2d, atol=0.05)
  assert geometry.rotation_angle(geometry.quaternion_to_matrix(filtered.quaternion_xyzw),
                                 geometry.quaternion_to_matrix(truth.pose.quaternion_xyzw)) < 1e-4
  drawn = tracked.as_detection()
  assert drawn.track_id == 1 and drawn.pose.location is filtered.location and drawn.score == truth.score


def test_an_outlier_pose_does_not_move_the_track_but_a_lasting_change_does():
  tracker = _tracker()  # outlier_frames 3
  flipped = ROTATION @ geometry.so3_exp([0.0, np.pi, 0.0])  # front and back swapped: the same 2D cuboid
  tilted = ROTATION @ geometry.so3_exp([np.pi / 2, 0.0, 0.0])
  # Frame 8: one flip. 10-13: outliers that disagree with each other. 16 on: a lasting flip.
  rotations = {8: flipped, 10: flipped, 11: tilted, 12: flipped, 13: tilted}
  angles = []
  for frame in range(20):
    rotation = flipped if frame >= 16 else rotations.get(frame, ROTATION)
    (tracked,) = tracker.update(frame, [detection(rotation, LEFT)])
    filtered = geometry.quaternion_to_matrix(tracked.filtered_pose.quaternion_xyzw)
    angles.append(np.rad2deg(geometry.rotation_angle(filtered, ROTATION)))
    assert tracked.track_id == 1
  assert max(angles[:18]) < 0.5  # single and disagreeing outliers are ignored, two agreeing ones too
  assert min(angles[18:]) > 179.0  # the third agreeing outlier restarts the filter from the detection


def test_settings_come_from_the_config_and_scale_the_keypoint_noise_to_the_frame():
  config = default.get_config()
  config.dataset.output_res = 128
  config.inference.tracking.keypoint_noise = 0.5
  tracker = tracking.Tracker.for_video(config, CAMERA_K, 25.0, (800, 600, 3))
  assert tracker.keypoint_sigma == pytest.approx(0.5 * 800 / 128)
  assert tracker.frame_seconds == pytest.approx(0.04)
  assert tracker.settings == tracking.TrackerSettings.from_config(config.inference.tracking)
  assert tracker.settings.noise.scale_measurement == config.inference.tracking.scale_noise


def test_infer_config_validation_names_bad_tracking_options():
  config = default.get_config()
  config.inference.tracking.min_hits = 0
  config.inference.tracking.keypoint_noise = -1.0
  config.inference.tracking.min_iou = 1.5
  config.inference.tracking.max_age = 0  # allowed: a track is dropped on its first miss
  problems = "\n".join(config_validation.collect_problems(config, "infer"))
  assert "inference.tracking.min_hits: got 0, expected a positive number" in problems
  assert "inference.tracking.keypoint_noise: got -1.0, expected a positive number" in problems
  assert "inference.tracking.min_iou: got 1.5, expected a number in [0, 1)" in problems
  assert "max_age" not in problems
