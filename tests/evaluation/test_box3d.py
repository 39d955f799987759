"""3D box fit, volume and IoU parity with TAO's iou3d.py (fixtures/tao_reference/iou3d/iou3d_pairs.json)."""

import json

import numpy as np
import pytest

from centerpose_jax import evaluation
from centerpose_jax import geometry
from centerpose_jax.evaluation import box3d
from centerpose_jax.evaluation import metrics


@pytest.fixture(scope="module")
def pairs(tao_reference):
  with open(tao_reference / "iou3d" / "iou3d_pairs.json") as f:
    return json.load(f)


def _assert_close(found, expected, kind, label):
  """GEOMETRY.md's tolerance: 1e-6, or 1e-4 relative for thin boxes (near TAO's 1e-6 plane thickness)."""
  if kind.startswith("thin"):
    assert found == pytest.approx(expected, rel=1e-4, abs=1e-12), label
  else:
    assert found == pytest.approx(expected, rel=0, abs=1e-6), label


def test_iou_matches_tao_on_every_pair(pairs):
  boxes_pred = np.array([pair["box_pred"] for pair in pairs])
  boxes_gt = np.array([pair["box_gt"] for pair in pairs])
  batched = evaluation.iou_3d_batch(boxes_pred, boxes_gt)
  assert batched.shape == (300,)
  for pair, found in zip(pairs, batched):
    label = f"pair {pair['id']} ({pair['kind']})"
    _assert_close(found, pair["iou_eval"], pair["kind"], label)
    if pair["iou_raw"] is not None:  # TAO raised (degenerate box): the evaluator's 0 is the reference
      _assert_close(found, pair["iou_raw"], pair["kind"], label)
    assert evaluation.iou_3d(pair["box_pred"], pair["box_gt"]) == found, label


def test_edge_cases_are_all_present_and_exact(pairs):
  edge_cases = {pair["kind"]: pair for pair in pairs if pair["id"] < 22}
  assert {"identical_axis_aligned", "disjoint_far", "touching_face", "touching_edge", "touching_vertex",
          "nested_axis_aligned", "thin_needle", "degenerate_zero_thickness"} <= set(edge_cases)
  analytic = {"identical_axis_aligned": 1.0, "disjoint_far": 0.0, "half_shift_x": 1 / 3, "quarter_shift_xy": 1 / 7,
              "nested_axis_aligned": 0.0625, "nested_rotated_inner": 1 / 27, "touching_face": 0.0,
              "touching_edge": 0.0, "touching_vertex": 0.0, "degenerate_zero_thickness": 0.0}
  for kind, expected in analytic.items():
    pair = edge_cases[kind]
    assert evaluation.iou_3d(pair["box_pred"], pair["box_gt"]) == pytest.approx(expected, abs=1e-12), kind


def test_volumes_match_tao(pairs):
  for pair in pairs:
    if pair["vol_pred"] is None:
      continue
    assert box3d.box_volume(np.array(pair["box_pred"])) == pytest.approx(pair["vol_pred"], rel=1e-9, abs=1e-15)
    assert box3d.box_volume(np.array(pair["box_gt"])) == pytest.approx(pair["vol_gt"], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("num_symmetry", [1, 4, 12])
def test_symmetric_search_matches_tao(pairs, num_symmetry):
  """TAO's evaluate_3d search (linspace(0, 2*pi, N) rotations of the prediction about its up axis)."""
  boxes_pred = np.array([pair["box_pred"] for pair in pairs])
  boxes_gt = np.array([pair["box_gt"] for pair in pairs])
  found = metrics.evaluate_3d(boxes_pred, boxes_gt, num_symmetry, tao_compatible=True)["iou"]
  for pair, value in zip(pairs, found):
    _assert_close(value, pair[f"iou_sym{num_symmetry}"], pair["kind"], f"pair {pair['id']} ({pair['kind']})")


def test_fast_path_equals_tao_replay_on_generic_pairs():
  """Away from shared planes both paths give TAO's value: the vectorised exact volume and the replay."""
  rng = np.random.default_rng(0)
  boxes_a, boxes_b = [], []
  for _ in range(40):
    for boxes in (boxes_a, boxes_b):
      rotation = geometry.quaternion_to_matrix(rng.normal(size=4))
      transform = np.eye(4)
      transform[:3, :3] = rotation
      transform[:3, 3] = rng.uniform(-0.3, 0.3, 3)
      boxes.append(geometry.apply_transform(transform, geometry.cuboid_vertices(rng.uniform(0.3, 1.0, 3))))
  boxes_a, boxes_b = np.array(boxes_a), np.array(boxes_b)
  fast = box3d.intersection_volume(boxes_a, boxes_b)
  assert (fast > 0).sum() >= 30
  for box_a, box_b, volume in zip(boxes_a, boxes_b, fast):
    fits = [box3d.fit_box(box) for box in (box_a, box_b)]
    fitted = [geometry.cuboid_vertices(size) @ linear.T + centre for linear, centre, size in fits]
    frames = [(size, linear, centre, (fitted[1 - i] - centre) @ np.linalg.inv(linear).T)
              for i, (linear, centre, size) in enumerate(fits)]
    assert box3d._faithful_intersection_volume(frames) == pytest.approx(volume, rel=1e-9, abs=1e-15)


def test_iou_is_symmetric_and_invariant_to_a_rigid_motion():
  rng = np.random.default_rng(1)
  box_a = geometry.cuboid_vertices([0.4, 0.7, 0.5])
  box_b = geometry.apply_transform(geometry.transform_from_pose([0.1, 0.05, -0.1], [0.1, 0.3, 0.0, 0.95]),
                                   geometry.cuboid_vertices([0.5, 0.6, 0.4]))
  motion = geometry.transform_from_pose(rng.normal(size=3), rng.normal(size=4))
  iou = evaluation.iou_3d(box_a, box_b)
  assert 0.1 < iou < 0.9
  assert evaluation.iou_3d(box_b, box_a) == pytest.approx(iou, abs=1e-12)
  moved = evaluation.iou_3d(geometry.apply_transform(motion, box_a), geometry.apply_transform(motion, box_b))
  assert moved == pytest.approx(iou, abs=1e-12)


@pytest.mark.parametrize("bad", ["all_equal", "flat", "nan", "inf"])
def test_degenerate_boxes_give_zero_without_raising(bad):
  box = geometry.cuboid_vertices([1.0, 1.0, 1.0])
  broken = {"all_equal": np.zeros((9, 3)), "flat": geometry.cuboid_vertices([1.0, 0.0, 1.0]),
            "nan": np.full((9, 3), np.nan), "inf": np.where(np.eye(9, 3) > 0, np.inf, box)}[bad]
  assert evaluation.iou_3d(box, broken) == 0.0
  assert evaluation.iou_3d(broken, box) == 0.0
  batched = evaluation.iou_3d_batch(np.stack([box, broken]), np.stack([box, box]))
  assert batched[0] == pytest.approx(1.0) and batched[1] == 0.0


def test_fit_recovers_rotation_translation_and_size():
  rotation = geometry.quaternion_to_matrix([0.2, -0.4, 0.1, 0.9])
  transform = np.eye(4)
  transform[:3, :3] = rotation
  transform[:3, 3] = [1.0, -2.0, 3.0]
  box = geometry.apply_transform(transform, geometry.cuboid_vertices([0.3, 0.5, 0.7]))
  linear, translation, size = box3d.fit_box(box)
  np.testing.assert_allclose(linear, rotation, atol=1e-12)
  np.testing.assert_allclose(translation, [1.0, -2.0, 3.0], atol=1e-12)
  np.testing.assert_allclose(size, [0.3, 0.5, 0.7], atol=1e-12)


def test_rotation_about_up_axis_matches_tao_convention():
  """(p - c) @ R(angle): a quarter turn takes corner 5's offset (1, -0.5, -0.5) to (0.5, -0.5, 1)."""
  box = geometry.cuboid_vertices([2.0, 1.0, 1.0]) + [5.0, 0.0, 0.0]
  turned = box3d.rotate_about_up_axis(box, [0.0, np.pi / 2])
  np.testing.assert_allclose(turned[0], box, atol=1e-12)
  np.testing.assert_allclose(turned[1, 0], box[0], atol=1e-12)
  np.testing.assert_allclose(turned[1, 5] - box[0], [0.5, -0.5, 1.0], atol=1e-12)


def test_a_polygon_clipped_away_adds_nothing_whatever_memory_held():
  """A polygon entirely outside its plane becomes zero vertices at the origin, never uninitialised memory.

  numpy hands a freed small buffer straight back to the next array of the same size, so a NaN-filled
  buffer freed just before the clip is what an uninitialised result would contain.
  """
  square = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
  polygons = np.repeat(square[None, [0, 1, 2, 3] + [3] * (box3d._MAX_POLYGON_VERTICES - 4)], 2, axis=0)
  normals, offsets = np.array([[-1.0, 0.0, 0.0]] * 2), np.array([0.5, 2.0])  # keeps x <= 0.5, then x <= 2
  poison = np.full_like(polygons, np.nan)
  del poison
  clipped, counts = box3d._clip_polygons(polygons, np.array([4, 4]), normals, offsets)
  assert counts.tolist() == [0, 4]
  assert np.array_equal(clipped[0], np.zeros_like(clipped[0]))
  np.testing.assert_array_equal(clipped[1], polygons[1])
  assert box3d._x_moments(clipped)[0] == 0.0
