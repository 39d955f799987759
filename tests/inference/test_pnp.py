"""PnP parity with TAO's pnp_shell (fixtures/tao_reference/pnp/pnp_cases.json)."""

import json

import numpy as np
import pytest

from centerpose_jax import geometry
from centerpose_jax.inference import solve_pnp


@pytest.fixture(scope="module")
def cases(tao_reference):
  with open(tao_reference / "pnp" / "pnp_cases.json") as f:
    return json.load(f)


def _quaternion_distance(q1, q2):
  """Max abs difference up to the sign of the quaternion."""
  q1, q2 = np.asarray(q1), np.asarray(q2)
  return min(np.abs(q1 - q2).max(), np.abs(q1 + q2).max())


@pytest.mark.parametrize("opencv", [True, False])
def test_matches_tao_including_failures(cases, opencv):
  expected_key = "opencv_true" if opencv else "opencv_false"
  kinds_checked = set()
  for case in cases:
    expected = case[expected_key]
    found = solve_pnp(np.array(case["points_in"]), np.array(case["K"]), case["scale"], opencv=opencv)
    label = f"case {case['id']} ({case['kind']})"
    if expected is None:
      assert found is None, label
      continue
    assert found is not None, label
    kinds_checked.add(case["kind"])
    # Same OpenCV build as the fixtures: every case, EPnP on 4 points included, agrees to ~1e-15.
    np.testing.assert_allclose(found.location, expected["location"], rtol=1e-6, atol=1e-9, err_msg=label)
    assert _quaternion_distance(found.quaternion_xyzw, expected["quaternion_xyzw"]) < 1e-6, label
    np.testing.assert_allclose(found.projected_keypoints_2d, expected["projected_points"], rtol=0, atol=1e-6,
                               err_msg=label)
    np.testing.assert_allclose(found.keypoints_3d, expected["point_3d_cam"], rtol=1e-6, atol=1e-9, err_msg=label)
  assert kinds_checked == {"exact", "noisy1px", "noisy4px", "missing2", "missing4_epnp", "sixteen_interleaved",
                           "sixteen_heat_placeholder", "scale_mismatch"}
  failures = {case["kind"] for case in cases if case[expected_key] is None}
  assert failures == {"missing5_fail", "behind_camera"}


def test_exact_cases_recover_the_generating_pose(cases):
  for case in cases:
    if case["kind"] != "exact":
      continue
    found = solve_pnp(np.array(case["points_in"]), np.array(case["K"]), case["scale"], opencv=True)
    pose = case["gt_pose_opencv"]
    np.testing.assert_allclose(found.location, pose["t"], atol=1e-9)
    np.testing.assert_allclose(geometry.quaternion_to_matrix(found.quaternion_xyzw), pose["R"], atol=1e-9)


def test_opengl_pose_is_the_opencv_pose_in_the_objectron_frame(cases):
  case = next(c for c in cases if c["kind"] == "noisy1px")
  args = (np.array(case["points_in"]), np.array(case["K"]), case["scale"])
  cv_pose, gl_pose = solve_pnp(*args, opencv=True), solve_pnp(*args, opencv=False)
  np.testing.assert_allclose(gl_pose.location, geometry.opencv_to_opengl(cv_pose.location), atol=1e-12)
  np.testing.assert_allclose(gl_pose.keypoints_3d, geometry.opencv_to_opengl(cv_pose.keypoints_3d), atol=1e-12)
  np.testing.assert_allclose(gl_pose.projected_keypoints_2d, cv_pose.projected_keypoints_2d, atol=1e-12)


def test_sixteen_points_use_vertex_i_over_2(cases):
  case = next(c for c in cases if c["kind"] == "exact")
  corners = np.array(case["points_in"])
  interleaved = np.repeat(corners, 2, axis=0)
  interleaved[1::2][:3] = -10000.0  # missing heatmap keypoints are skipped
  eight = solve_pnp(corners, np.array(case["K"]), case["scale"])
  sixteen = solve_pnp(interleaved, np.array(case["K"]), case["scale"])
  np.testing.assert_allclose(sixteen.location, eight.location, atol=1e-9)
  with pytest.raises(ValueError, match="8 or 16"):
    solve_pnp(corners[:7], np.array(case["K"]), case["scale"])


def test_rotvec_to_quaternion_matches_the_rotation():
  rng = np.random.default_rng(3)
  for rotvec in [np.zeros(3), np.array([0.0, 0.0, np.pi]), *rng.normal(size=(5, 3))]:
    quaternion = geometry.rotvec_to_quaternion(rotvec.reshape(3, 1))
    angle = np.linalg.norm(rotvec)
    axis = rotvec / angle if angle else np.array([1.0, 0.0, 0.0])
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rodrigues = np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross
    np.testing.assert_allclose(geometry.quaternion_to_matrix(quaternion), rodrigues, atol=1e-12)
    np.testing.assert_allclose(quaternion[3], np.cos(angle / 2), atol=1e-15)  # pyrr's sign, w = cos(angle / 2)


def test_non_finite_points_are_skipped(cases):
  case = next(c for c in cases if c["kind"] == "exact")
  points = np.array(case["points_in"])
  points[[2, 5]] = [np.inf, np.nan]
  reference = points.copy()
  reference[[2, 5]] = -10000.0
  found = solve_pnp(points, np.array(case["K"]), case["scale"])
  expected = solve_pnp(reference, np.array(case["K"]), case["scale"])
  np.testing.assert_array_equal(found.location, expected.location)
  assert solve_pnp(np.full((8, 2), np.inf), np.array(case["K"]), case["scale"]) is None
