"""The pose Kalman filter: still objects, the +-180 degree wrap, PnP measurement covariance."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from centerpose_jax import geometry
from centerpose_jax.inference import pnp
from centerpose_jax.inference import pose_filter
from tracking_helpers import CAMERA_K
from tracking_helpers import SCALE

FPS = 30.0
TRUE_ROTATION = geometry.so3_exp([0.3, -0.5, 0.2])
TRUE_TRANSLATION = np.array([0.2, -0.1, 5.0])


def _noise(translation_acceleration=1e-4, rotation_acceleration=1e-4):
  return pose_filter.FilterNoise(translation_acceleration=translation_acceleration,
                                 rotation_acceleration=rotation_acceleration, scale_acceleration=1e-4,
                                 scale_measurement=0.05)


def _run(measurements, covariance, noise):
  """Filters (rotation, translation) measurements one per frame; returns the filter after each frame."""
  states = []
  state = None
  for rotation, translation in measurements:
    if state is None:
      state = pose_filter.PoseFilter(rotation, translation, SCALE, covariance, noise)
    else:
      state.predict(1.0 / FPS)
      state.update(rotation, translation, SCALE, covariance)
    states.append((state.rotation.copy(), state.translation.copy()))
  return states


def test_a_still_object_converges_to_the_mean_of_its_noisy_measurements():
  rng = np.random.default_rng(0)
  frames, translation_sigma, rotation_sigma = 900, 0.05, np.deg2rad(2.0)
  translations = TRUE_TRANSLATION + rng.normal(0, translation_sigma, (frames, 3))
  rotations = [TRUE_ROTATION @ geometry.so3_exp(rng.normal(0, rotation_sigma, 3)) for _ in range(frames)]
  covariance = np.diag([rotation_sigma ** 2] * 3 + [translation_sigma ** 2] * 3)

  rotation, translation = _run(zip(rotations, translations), covariance, _noise())[-1]

  mean_translation = translations.mean(axis=0)
  mean_rotation = Rotation.from_matrix(np.stack(rotations)).mean().as_matrix()
  # With (almost) no process noise the filter is a least-squares fit over every frame: its distance to the
  # mean is of the order of the mean's own error, sigma / sqrt(frames), far below one measurement's noise.
  assert np.abs(translation - mean_translation).max() < 0.25 * translation_sigma
  assert geometry.rotation_angle(rotation, mean_rotation) < 0.25 * rotation_sigma
  assert np.abs(translation - TRUE_TRANSLATION).max() < 0.25 * translation_sigma
  single_errors = np.abs(translations - TRUE_TRANSLATION).max(axis=1)
  assert np.median(single_errors) > 2 * np.abs(translation - TRUE_TRANSLATION).max()


def test_a_still_object_at_180_degrees_is_filtered_across_the_wrap():
  """Measurements at +-(180 - e) degrees about y (rotation vectors of opposite signs) average to 180, not 0."""
  rng = np.random.default_rng(1)
  truth = geometry.so3_exp([0.0, np.pi, 0.0])
  sigma = np.deg2rad(3.0)
  rotations = [truth @ geometry.so3_exp(rng.normal(0, sigma, 3)) for _ in range(300)]
  rotvec_signs = {np.sign(geometry.so3_log(r)[1]) for r in rotations}
  assert rotvec_signs == {-1.0, 1.0}  # the measurements do straddle the wrap
  covariance = np.diag([sigma ** 2] * 3 + [0.01] * 3)

  states = _run(((r, TRUE_TRANSLATION) for r in rotations), covariance, _noise())

  errors = [np.rad2deg(geometry.rotation_angle(rotation, truth)) for rotation, _ in states[30:]]
  assert max(errors) < 1.5


def test_a_spinning_object_is_tracked_through_180_degrees():
  """A turn at 90 degrees per second about the camera's y axis from 120 to 297 degrees (the wrap at frame 20):
  once the filter has caught the speed, its error is well below the measurements' and it turns steadily."""
  rng = np.random.default_rng(2)
  sigma = np.deg2rad(2.0)
  angles = np.deg2rad(120.0) + np.deg2rad(90.0) * np.arange(60) / FPS
  truths = [geometry.so3_exp([0.0, angle, 0.0]) for angle in angles]
  measurements = [(truth @ geometry.so3_exp(rng.normal(0, sigma, 3)), TRUE_TRANSLATION) for truth in truths]
  covariance = np.diag([sigma ** 2] * 3 + [0.01] * 3)

  states = _run(measurements, covariance, _noise(rotation_acceleration=0.5))

  filtered_errors = [geometry.rotation_angle(rotation, truth) for (rotation, _), truth in zip(states, truths)]
  measured_errors = [geometry.rotation_angle(rotation, truth) for (rotation, _), truth in zip(measurements, truths)]
  assert np.mean(filtered_errors[10:]) < 0.5 * np.mean(measured_errors[10:])
  assert np.rad2deg(max(filtered_errors[10:])) < 3.5
  steps = [np.rad2deg(geometry.so3_log(a.T @ b)[1]) for (a, _), (b, _) in zip(states[10:], states[11:])]
  assert all(0 < step < 6 for step in steps)  # 3 degrees per frame, always the same sense, no jump


def test_pnp_covariance_matches_the_spread_of_pnp_solutions_of_noisy_keypoints():
  rng = np.random.default_rng(3)
  rotation = geometry.so3_exp([0.4, 0.6, -0.2])
  translation = np.array([0.3, 0.2, 4.0])
  corners = geometry.cuboid_vertices(SCALE)[1:] @ rotation.T + translation
  keypoints = geometry.project_with_intrinsics(corners, CAMERA_K)
  sigma = 1.5  # pixels
  samples = []
  for _ in range(400):
    pose = pnp.solve_pnp(keypoints + rng.normal(0, sigma, keypoints.shape), CAMERA_K, SCALE)
    solved = geometry.quaternion_to_matrix(pose.quaternion_xyzw)
    samples.append(np.concatenate([geometry.so3_log(rotation.T @ solved), pose.location - translation]))
  empirical = np.cov(np.array(samples).T)

  predicted = pose_filter.pnp_covariance(rotation, translation, SCALE, CAMERA_K, sigma)

  np.testing.assert_allclose(np.sqrt(np.diag(empirical)), np.sqrt(np.diag(predicted)), rtol=0.15)
  # The depth is the worst-observed direction, and twice the keypoints halve the variance.
  assert np.argmax(np.diag(predicted)[3:]) == 2
  np.testing.assert_allclose(pose_filter.pnp_covariance(rotation, translation, SCALE, CAMERA_K, sigma, 2),
                             predicted / 2, rtol=1e-6)
