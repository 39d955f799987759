"""Pose metrics and VOC AP on constructed cases with known answers."""

import numpy as np
import pytest

from centerpose_jax import geometry
from centerpose_jax.evaluation import metrics


def _box(size, location, quaternion_xyzw=(0.0, 0.0, 0.0, 1.0)):
  return geometry.apply_transform(geometry.transform_from_pose(location, quaternion_xyzw),
                                  geometry.cuboid_vertices(size))


def test_thresholds_are_taos():
  assert set(metrics.THRESHOLDS) == set(metrics.METRICS)
  for name in metrics.METRICS:
    assert len(metrics.THRESHOLDS[name]) == 21 and metrics.THRESHOLDS[name][0] == 0.0
  assert metrics.THRESHOLDS["pixel"][-1] == 0.1
  assert metrics.THRESHOLDS["azimuth"][10] == 15.0
  assert metrics.THRESHOLDS["polar"][10] == 10.0


def test_symmetry_angle_sets():
  np.testing.assert_allclose(np.degrees(metrics.symmetry_angles_2d(4)), [0, 90, 180, 270])
  np.testing.assert_allclose(np.degrees(metrics.symmetry_angles_3d(4)), [0, 90, 180, 270])
  np.testing.assert_allclose(np.degrees(metrics.symmetry_angles_3d(4, tao_compatible=True)), [0, 120, 240, 360])
  np.testing.assert_allclose(metrics.symmetry_angles_3d(1, tao_compatible=True), [0.0])


def test_voc_ap_known_curve():
  # Ranked hits T, F, T with 2 ground truths: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
  # Interpolated precision is 1 up to recall 1/2, then 2/3: AP = 0.5 + 0.5 * 2/3.
  expected = 0.5 + 0.5 * 2 / 3
  assert metrics.average_precision([True, False, True], [0.9, 0.8, 0.7], 2) == pytest.approx(expected)
  assert metrics.average_precision([False, True, True], [0.8, 0.9, 0.7], 2) == pytest.approx(expected)
  assert metrics.average_precision([True, True], [0.9, 0.8], 4) == pytest.approx(0.5)
  assert metrics.average_precision([], [], 3) == 0.0
  assert np.isnan(metrics.average_precision([False], [0.5], 0))


def test_tao_ap_exceeds_one_with_duplicates_and_uses_float32():
  # Two true positives for one ground truth: TAO's recall runs 1, 2 and its AP is 1 + 1.
  assert metrics.average_precision([True, True], [0.9, 0.8], 1, tao_compatible=True) == 2.0
  # Recall and precision are float32 values (summed in float64), so TAO's AP differs from the float64 one.
  third, two_thirds = float(np.float32(1 / 3)), float(np.float32(2 / 3))
  tao = metrics.average_precision([True, False, True], [0.9, 0.8, 0.7], 3, tao_compatible=True)
  assert tao == third + (two_thirds - third) * two_thirds
  assert metrics.average_precision([True, False, True], [0.9, 0.8, 0.7], 3) == pytest.approx(1 / 3 + 2 / 9)
  assert metrics.average_precision([True, False, True], [0.9, 0.8, 0.7], 3) != tao


def test_hits_direction_and_nan():
  hits = metrics.hits("iou", [0.5, np.nan])
  assert hits[10, 0] and not hits[11, 0] and not hits[:, 1].any()
  hits = metrics.hits("pixel", [0.05])
  assert hits[10, 0] and not hits[9, 0]


def test_add_and_adds():
  truth = _box([0.2, 0.4, 0.3], [0.0, 0.0, -1.0])
  shifted = truth + [0.03, 0.0, 0.04]
  add, adds = metrics.average_distances(shifted, truth)
  assert add == pytest.approx(0.05)
  assert adds <= add
  # A box turned half a turn about y: ADD is large but every point has a ground-truth point nearby.
  turned = _box([0.2, 0.4, 0.3], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0, 0.0])
  add, adds = metrics.average_distances(turned, truth)
  assert add > 0.2 and adds == pytest.approx(0.0, abs=1e-12)


def test_scale_error():
  assert metrics.scale_error([0.5, 1.0, 0.5], [0.1, 0.2, 0.1]) == 0.0
  assert metrics.scale_error([0.6, 1.0, 0.5], [0.1, 0.2, 0.1]) == pytest.approx(0.2)


def test_plane_scale_recovers_the_metric_box():
  """A box standing on the ground plane, shrunk towards the camera, is scaled back onto the plane."""
  plane_center, plane_normal = np.array([0.0, -0.3, -1.0]), np.array([0.0, 1.0, 0.0])
  metric = _box([0.2, 0.3, 0.2], [0.05, -0.15, -1.2])  # bottom face at y = -0.3
  relative = metric / 0.27
  assert metrics.plane_scale(relative, plane_center, plane_normal) == pytest.approx(0.27)


def test_projection_error_2d_is_zero_for_the_ground_truth_and_uses_symmetries():
  location, quaternion = [0.02, -0.05, -0.8], [0.1, 0.2, -0.1, 0.97]
  truth = _box([0.2, 0.3, 0.2], location, quaternion)
  pose = geometry.transform_from_pose(location, quaternion)
  projection = np.array([[2.1, 0.0, 0.02, 0.0], [0.0, 1.6, -0.01, 0.0], [0.0, 0.0, -1.0, -0.002],
                         [0.0, 0.0, -1.0, 0.0]])
  projected = geometry.project_with_projection_matrix(truth, projection, 1.0, 1.0)
  assert metrics.projection_error_2d(projected, truth, pose, projection, 1) == pytest.approx(0.0, abs=1e-12)
  # The same box turned a quarter about its own y axis: wrong for N = 1, right for N = 4.
  quarter = geometry.apply_transform(pose @ geometry.rotation_about_y(np.pi / 2) @ np.linalg.inv(pose), truth)
  turned = geometry.project_with_projection_matrix(quarter, projection, 1.0, 1.0)
  assert metrics.projection_error_2d(turned, truth, pose, projection, 1) > 0.01
  assert metrics.projection_error_2d(turned, truth, pose, projection, 4) == pytest.approx(0.0, abs=1e-12)


def test_viewpoint_of_a_box_straight_ahead():
  # Camera looks along -z (OpenGL); a box in front of it sees the camera along its own +z axis.
  azimuth, elevation = metrics.viewpoint(_box([0.2, 0.2, 0.2], [0.0, 0.0, -1.0]))
  assert azimuth == pytest.approx(90.0) and elevation == pytest.approx(0.0, abs=1e-9)
  azimuth, elevation = metrics.viewpoint(_box([0.2, 0.2, 0.2], [0.0, -1.0, -1.0]))
  assert elevation == pytest.approx(45.0)


def test_azimuth_error_folding():
  """Under N = 12 symmetry a 29 degree yaw error is 1 degree; TAO reports 29."""
  truth = _box([0.2, 0.3, 0.2], [0.0, 0.0, -1.0])
  turned = _box([0.2, 0.3, 0.2], [0.0, 0.0, -1.0], geometry.matrix_to_quaternion(
      geometry.rotation_about_y(np.radians(29.0))[:3, :3]))
  fixed, _ = metrics.viewpoint_errors(turned, truth, 12)
  tao, _ = metrics.viewpoint_errors(turned, truth, 12, tao_compatible=True)
  assert fixed == pytest.approx(1.0) and tao == pytest.approx(29.0)
  one, _ = metrics.viewpoint_errors(turned, truth, 1)
  assert one == pytest.approx(29.0)


def test_evaluate_3d_picks_the_best_symmetric_rotation():
  truth = _box([0.2, 0.3, 0.4], [0.0, 0.0, -1.0])
  quarter_turn = geometry.matrix_to_quaternion(geometry.rotation_about_y(np.pi / 2)[:3, :3])
  turned = _box([0.2, 0.3, 0.4], [0.0, 0.0, -1.0], quarter_turn)
  unturned = metrics.evaluate_3d(turned[None], truth[None], 1)
  assert unturned["iou"][0] == pytest.approx(1 / 3) and unturned["rotation"][0] == 0
  # Turns of 90 and 270 degrees both restore the box (a box is its own half-turn), with corners swapped in
  # one of them: ADD-S and the azimuth error modulo 90 degrees are 0 either way.
  result = metrics.evaluate_3d(turned[None], truth[None], 4)
  assert result["iou"][0] == pytest.approx(1.0) and result["rotation"][0] in (1, 3)
  assert result["adds"][0] == pytest.approx(0.0, abs=1e-9)
  assert result["azimuth"][0] == pytest.approx(0.0, abs=1e-6)
  # TAO's 4 angles are 0, 120, 240 and 360 degrees: none undoes a quarter turn.
  tao = metrics.evaluate_3d(turned[None], truth[None], 4, tao_compatible=True)
  assert tao["iou"][0] < 0.9 and tao["add"][0] > 0.01


def test_no_overlap_values():
  """Without overlap TAO reports ADD = ADD-S = 1.0; the default mode the real distances."""
  truth = _box([0.2, 0.3, 0.2], [0.0, 0.0, -1.0])
  far = truth + [2.0, 0.0, 0.0]
  fixed = metrics.evaluate_3d(far[None], truth[None], 1)
  tao = metrics.evaluate_3d(far[None], truth[None], 1, tao_compatible=True)
  assert fixed["iou"][0] == 0.0 and tao["iou"][0] == 0.0
  assert fixed["add"][0] == pytest.approx(2.0) and tao["add"][0] == 1.0 and tao["adds"][0] == 1.0
