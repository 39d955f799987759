"""Kalman filtering of one object's pose over video frames: constant velocity on translation, rotation and scale.

Everything is in the OpenCV camera frame (x right, y down, z forward), with lengths in relative-scale units
(the PnP cuboid has the network's relative scale, so its height is about 1) and time in seconds.

State of a `PoseFilter`:
  nominal: rotation R [3, 3] (object -> camera), translation t [3] (the cuboid centre), angular velocity w [3]
    (rad/s, object frame), velocity v [3] (units/s); scale s [3] and its rate s' [3] (units/s).
  error state with covariance: [dtheta, dt, dw, dv] (12) with the true rotation R so3_exp(dtheta) (the right
    perturbation of `geometry`, in the object frame), and separately [ds, ds'] (6).

Predict over dt seconds (constant velocity, piecewise-constant white acceleration of standard deviation a per
position-rate pair):
  R <- R so3_exp(w dt), t <- t + v dt, s <- s + s' dt
  F = [[so3_exp(-w dt), 0, J_r(w dt) dt, 0], [0, I, 0, I dt], [0, 0, I, 0], [0, 0, 0, I]]
  Q per pair = a^2 [[dt^4 / 4, dt^3 / 2], [dt^3 / 2, dt^2]]
Update with a PnP pose (R_m, t_m), its [6, 6] covariance over (dtheta, t) and a scale measurement s_m:
  y = [so3_log(R^T R_m), t_m - t], H = [I6, 0]; the correction's dtheta is folded into R (R <- R so3_exp(dtheta))
  and the error state reset to zero (the reset Jacobian I - [dtheta / 2]x is taken as I: first order). The
  rotation residual is a tangent vector, so angles that cross +-180 degrees are handled like any other.
The pose measurement's covariance is the keypoints' 2D noise propagated through the PnP Jacobian
(`pnp_covariance`): a pose that the corners pin down well (close, large, seen at an angle) weighs more than a
far one, and the poorly observed depth is smoothed most.
"""

import dataclasses

import numpy as np

from centerpose_jax import geometry

# The velocity priors of a new track: the speed reached after one second at the acceleration noise level.
_PRIOR_SECONDS = 1.0
# Added to the PnP information matrix so that a degenerate view still gives a finite covariance.
_INFORMATION_FLOOR = 1e-9


@dataclasses.dataclass(frozen=True)
class FilterNoise:
  """Noise levels of `PoseFilter` (the `inference.tracking` options of the same names).

  Attributes:
    translation_acceleration: standard deviation of the unmodelled acceleration of the object centre,
      relative-scale units per s^2.
    rotation_acceleration: the same for the rotation, rad/s^2.
    scale_acceleration: the same for the relative scale, units per s^2.
    scale_measurement: standard deviation of the network's relative scale in one frame (units).
  """
  translation_acceleration: float
  rotation_acceleration: float
  scale_acceleration: float
  scale_measurement: float


def pnp_covariance(rotation, translation, relative_scale, camera_k, keypoint_sigma, points_per_corner=1):
  """[6, 6] covariance over (dtheta [rad, object frame], t [units, camera frame]) of a PnP pose.

  First-order propagation of independent Gaussian keypoint noise: sigma^2 (J^T J)^-1 with J the [2N, 6]
  Jacobian of the projected cuboid corners with respect to the right rotation perturbation and the
  translation, at the solved pose. Each corner counts `points_per_corner` times (2 when PnP used each corner's
  regressed and heatmap keypoints).

  Args:
    rotation: [3, 3] object -> OpenCV camera rotation; translation: [3] cuboid centre, OpenCV frame.
    relative_scale: [3] the cuboid size PnP used.
    camera_k: [3, 3] intrinsics, pixels.
    keypoint_sigma: standard deviation of each keypoint coordinate, pixels.
    points_per_corner: 1 or 2.
  """
  rotation = np.asarray(rotation, dtype=np.float64)
  camera_k = np.asarray(camera_k, dtype=np.float64)
  corners = geometry.cuboid_vertices(relative_scale)[1:]  # [8, 3] object frame
  points = corners @ rotation.T + np.asarray(translation, dtype=np.float64).reshape(3)  # [8, 3] camera frame
  pixels = geometry.project_with_intrinsics(points, camera_k)  # [8, 2]
  # d pixel / d camera point: (K[:2] - pixel e_z^T) / z, [8, 2, 3].
  by_point = (camera_k[None, :2, :] - pixels[:, :, None] * np.array([0.0, 0.0, 1.0])) / points[:, 2, None, None]
  # d camera point / d (dtheta, t): [-R [X]x, I], [8, 3, 6].
  by_pose = np.stack([np.concatenate([-rotation @ geometry.skew(corner), np.eye(3)], axis=1)
                      for corner in corners])
  jacobian = np.einsum("nij,njk->nik", by_point, by_pose).reshape(-1, 6)
  information = points_per_corner * jacobian.T @ jacobian / keypoint_sigma ** 2
  return np.linalg.inv(information + _INFORMATION_FLOOR * np.eye(6))


def pose_residual(rotation_a, translation_a, rotation_b, translation_b) -> np.ndarray:
  """[6] (so3_log(R_a^T R_b), t_b - t_a): pose b relative to pose a, as (dtheta, t) of the error state."""
  return np.concatenate([geometry.so3_log(np.asarray(rotation_a, dtype=np.float64).T @ rotation_b),
                         np.asarray(translation_b, dtype=np.float64).reshape(3) - translation_a])


def _pair_noise(acceleration, dt) -> np.ndarray:
  """[6, 6] process noise of three (position, rate) pairs, ordered [positions (3), rates (3)]."""
  block = acceleration ** 2 * np.array([[dt ** 4 / 4, dt ** 3 / 2], [dt ** 3 / 2, dt ** 2]])
  return np.kron(block, np.eye(3))


def _joseph_update(covariance, gain, measurement_matrix, measurement_covariance) -> np.ndarray:
  """(I - K H) P (I - K H)^T + K R K^T: the covariance after an update, kept symmetric positive definite."""
  reduce = np.eye(len(covariance)) - gain @ measurement_matrix
  updated = reduce @ covariance @ reduce.T + gain @ measurement_covariance @ gain.T
  return (updated + updated.T) / 2


class PoseFilter:
  """The filter of one track (see the module docstring). All poses are in the OpenCV camera frame.

  Args:
    rotation: [3, 3], translation: [3], scale: [3]: the first measurement.
    pose_covariance: [6, 6] its covariance over (dtheta, t) (`pnp_covariance`).
    noise: `FilterNoise`.
  """

  def __init__(self, rotation, translation, scale, pose_covariance, noise: FilterNoise):
    self.noise = noise
    self.rotation = np.asarray(rotation, dtype=np.float64).copy()
    self.translation = np.asarray(translation, dtype=np.float64).reshape(3).copy()
    self.angular_velocity = np.zeros(3)
    self.velocity = np.zeros(3)
    self.scale = np.asarray(scale, dtype=np.float64).reshape(3).copy()
    self.scale_rate = np.zeros(3)
    rate_prior = np.concatenate([np.full(3, noise.rotation_acceleration), np.full(3, noise.translation_acceleration)])
    self.covariance = np.zeros((12, 12))  # over [dtheta, dt, dw, dv]
    self.covariance[:6, :6] = pose_covariance
    self.covariance[6:, 6:] = np.diag((rate_prior * _PRIOR_SECONDS) ** 2)
    self.scale_covariance = np.diag(np.concatenate([np.full(3, noise.scale_measurement ** 2),
                                                    np.full(3, (noise.scale_acceleration * _PRIOR_SECONDS) ** 2)]))

  def predict(self, dt: float) -> None:
    """Moves the state `dt` seconds ahead."""
    step = self.angular_velocity * dt
    transition = np.eye(12)
    transition[:3, :3] = geometry.so3_exp(-step)
    transition[:3, 6:9] = geometry.so3_right_jacobian(step) * dt
    transition[3:6, 9:12] = np.eye(3) * dt
    self.rotation = self.rotation @ geometry.so3_exp(step)
    self.translation = self.translation + self.velocity * dt
    noise = np.zeros((12, 12))
    rotation_noise = _pair_noise(self.noise.rotation_acceleration, dt)
    translation_noise = _pair_noise(self.noise.translation_acceleration, dt)
    rotation_index, translation_index = np.r_[0:3, 6:9], np.r_[3:6, 9:12]
    noise[np.ix_(rotation_index, rotation_index)] = rotation_noise
    noise[np.ix_(translation_index, translation_index)] = translation_noise
    self.covariance = transition @ self.covariance @ transition.T + noise

    scale_transition = np.eye(6)
    scale_transition[:3, 3:] = np.eye(3) * dt
    self.scale = self.scale + self.scale_rate * dt
    self.scale_covariance = (scale_transition @ self.scale_covariance @ scale_transition.T
                             + _pair_noise(self.noise.scale_acceleration, dt))

  def _pose_innovation(self, rotation, translation, pose_covariance):
    """(y [6], S [6, 6]) of a pose measurement against the current state."""
    return (pose_residual(self.rotation, self.translation, rotation, translation),
            self.covariance[:6, :6] + pose_covariance)

  def mahalanobis(self, rotation, translation, pose_covariance) -> float:
    """Squared Mahalanobis distance of a pose measurement from the current state (chi-square, 6 dof)."""
    residual, innovation_covariance = self._pose_innovation(rotation, translation, pose_covariance)
    return float(residual @ np.linalg.solve(innovation_covariance, residual))

  def update(self, rotation, translation, scale, pose_covariance) -> None:
    """Corrects the state with a measured pose (OpenCV frame), its covariance and a measured scale [3]."""
    residual, innovation_covariance = self._pose_innovation(rotation, translation, pose_covariance)
    gain = np.linalg.solve(innovation_covariance, self.covariance[:6, :]).T  # P H^T S^-1, [12, 6]
    correction = gain @ residual
    self.rotation = self.rotation @ geometry.so3_exp(correction[:3])
    self.translation = self.translation + correction[3:6]
    self.angular_velocity = self.angular_velocity + correction[6:9]
    self.velocity = self.velocity + correction[9:12]
    pose_matrix = np.eye(6, 12)
    self.covariance = _joseph_update(self.covariance, gain, pose_matrix, pose_covariance)

    scale_noise = np.eye(3) * self.noise.scale_measurement ** 2
    scale_matrix = np.eye(3, 6)
    scale_gain = np.linalg.solve(self.scale_covariance[:3, :3] + scale_noise, self.scale_covariance[:3, :]).T
    scale_correction = scale_gain @ (np.asarray(scale, dtype=np.float64).reshape(3) - self.scale)
    self.scale = self.scale + scale_correction[:3]
    self.scale_rate = self.scale_rate + scale_correction[3:]
    self.scale_covariance = _joseph_update(self.scale_covariance, scale_gain, scale_matrix, scale_noise)
