"""SO(3) helpers of geometry.py: exponential, logarithm, right Jacobian, angles."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from centerpose_jax import geometry


@pytest.mark.parametrize("angle", [0.0, 1e-10, 1e-3, 1.0, 3.0, np.pi - 1e-9, np.pi])
def test_exp_matches_scipy_and_log_inverts_it(angle):
  axis = np.array([0.3, -0.8, 0.52])
  rotvec = axis / np.linalg.norm(axis) * angle
  rotation = geometry.so3_exp(rotvec)
  np.testing.assert_allclose(rotation, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-12)
  recovered = geometry.so3_log(rotation)
  # At pi the axis's sign is arbitrary: compare the rotations.
  np.testing.assert_allclose(geometry.so3_exp(recovered), rotation, atol=1e-9)
  assert np.linalg.norm(recovered) == pytest.approx(angle, abs=1e-7)


@pytest.mark.parametrize("rotvec", [[0.0, 0.0, 0.0], [1e-9, 0.0, 0.0], [0.2, -0.4, 0.1], [1.5, 2.0, -0.5]])
def test_right_jacobian_is_the_derivative_of_exp(rotvec):
  rotvec = np.asarray(rotvec)
  jacobian = geometry.so3_right_jacobian(rotvec)
  step = 1e-6
  for k in range(3):
    delta = np.zeros(3)
    delta[k] = step
    # exp(w + d) = exp(w) exp(J_r d): the k-th column is log(exp(w)^T exp(w + d)) / step.
    column = geometry.so3_log(geometry.so3_exp(rotvec).T @ geometry.so3_exp(rotvec + delta)) / step
    np.testing.assert_allclose(column, jacobian[:, k], atol=1e-5)


def test_rotation_angle_and_skew():
  a = geometry.so3_exp([0.1, 0.2, 0.3])
  b = a @ geometry.so3_exp([0.0, 0.0, 1e-4])
  assert geometry.rotation_angle(a, b) == pytest.approx(1e-4, rel=1e-6)
  assert geometry.rotation_angle(a, a @ geometry.so3_exp([np.pi, 0.0, 0.0])) == pytest.approx(np.pi)
  v, w = np.array([1.0, -2.0, 0.5]), np.array([0.3, 0.4, -1.0])
  np.testing.assert_allclose(geometry.skew(v) @ w, np.cross(v, w))


def test_frame_change_of_rotations_is_an_involution_that_keeps_right_perturbations():
  rotation = geometry.so3_exp([0.4, -1.0, 2.0])
  delta = geometry.so3_exp([0.01, 0.02, -0.03])
  in_gl = geometry.rotation_opencv_to_opengl(rotation)
  np.testing.assert_allclose(geometry.rotation_opengl_to_opencv(in_gl), rotation, atol=1e-15)
  # R delta in OpenCV is (M R) delta in OpenGL: the object-frame perturbation is the same in both frames.
  np.testing.assert_allclose(geometry.rotation_opencv_to_opengl(rotation @ delta), in_gl @ delta, atol=1e-15)
