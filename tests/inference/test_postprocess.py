"""Post-processing: inverse affine, soft-NMS, and the whole per-image chain down to the pose."""

import jax
import numpy as np
import pytest

from centerpose_jax import geometry
from centerpose_jax.data import transforms
from centerpose_jax.inference import postprocess_detections
from centerpose_jax.inference import soft_nms
from centerpose_jax.inference import to_image_pixels

OUTPUT_SIZE = (128, 128)
IMAGE_W, IMAGE_H = 640, 480
CENTER, SCALE = np.array([IMAGE_W / 2, IMAGE_H / 2]), float(max(IMAGE_W, IMAGE_H))
CAMERA_K = geometry.camera_matrix(600.0, 610.0, 322.0, 236.0)


def _to_grid(points):
  """Image pixels -> output grid with the data pipeline's forward letterbox affine."""
  matrix = transforms.affine_transform_matrix(CENTER, SCALE, 0.0, OUTPUT_SIZE)
  return np.asarray(transforms.apply_affine(np.asarray(points, np.float64), matrix))


def test_inverse_affine_round_trips_the_data_transform():
  points = np.array([[0.0, 0.0], [639.0, 479.0], [100.5, 333.25], [-20.0, 500.0]])
  np.testing.assert_allclose(to_image_pixels(_to_grid(points), CENTER, SCALE, OUTPUT_SIZE), points, atol=1e-3)


def test_inverse_affine_closed_form_and_missing_points():
  grid = np.array([[64.0, 64.0], [0.0, 10.0], [-10000.0, -10000.0], [127.5, 3.0]])
  found = to_image_pixels(grid, CENTER, SCALE, OUTPUT_SIZE)
  expected = CENTER + (grid - 64.0) * SCALE / 128.0  # reference-behavior §5.2
  expected[2] = -10000.0
  np.testing.assert_allclose(found, expected, atol=1e-3)


def test_soft_nms_decays_overlaps_and_drops_low_scores():
  boxes = np.array([
      [0, 0, 9, 9],  # A: the best box
      [0, 5, 9, 14],  # B: IoU 50 / 150 with A under the +1-pixel convention
      [100, 100, 110, 110],  # C: no overlap
      [0, 0, 9, 9],  # D: a copy of A, IoU 1
  ], dtype=np.float64)
  scores = np.array([0.9, 0.8, 0.7, 0.85])
  order, kept = soft_nms(boxes, scores, threshold=0.3)
  decayed_b = 0.8 * np.exp(-(1 / 3) ** 2 / 0.5)
  # D falls to 0.85 * exp(-2) < 0.3 and is dropped; C (0.7) now outranks the decayed B (0.64).
  np.testing.assert_array_equal(order, [0, 2, 1])
  np.testing.assert_allclose(kept, [0.9, 0.7, decayed_b], rtol=1e-12)


def test_soft_nms_decay_compounds_over_selections():
  # A-B and B-C overlap with IoU 1/3; A and C do not touch (x 10 > 9 + 1 - 1).
  boxes = np.array([[0, 0, 9, 9], [5, 0, 14, 9], [10, 0, 19, 9]], dtype=np.float64)
  order, kept = soft_nms(boxes, np.array([0.9, 0.8, 0.7]), threshold=0.3)
  weight = np.exp(-(1 / 3) ** 2 / 0.5)
  # A decays B to 0.64 < C's 0.7, so C is taken next and decays B once more.
  np.testing.assert_array_equal(order, [0, 2, 1])
  np.testing.assert_allclose(kept, [0.9, 0.7, 0.8 * weight * weight], rtol=1e-12)


def _posed_object(location, rotation_deg, scale):
  """(corner pixels [8, 2], rotation [3, 3]) of a cuboid posed in front of CAMERA_K (OpenCV frame)."""
  axis = np.array([0.3, 0.9, 0.3]) / np.linalg.norm([0.3, 0.9, 0.3])
  half_angle = np.radians(rotation_deg) / 2
  rotation = geometry.quaternion_to_matrix(np.append(np.sin(half_angle) * axis, np.cos(half_angle)))
  corners = geometry.cuboid_vertices(scale)[1:] @ rotation.T + np.asarray(location)
  return geometry.project_with_intrinsics(corners, CAMERA_K), rotation


def _decoded(objects):
  """Decoder-like outputs for one image (K = len(objects)) from (score, corner pixels, heatmap pixels, scale)."""
  bboxes, scores, scales, displacement, heatmap = [], [], [], [], []
  for score, corners_px, heat_px, scale in objects:
    grid = _to_grid(corners_px)
    bboxes.append(np.concatenate([grid.min(axis=0), grid.max(axis=0)]))
    scores.append([score])
    scales.append(scale)
    displacement.append(grid.reshape(-1))
    heatmap.append(np.full(16, -10000.0) if heat_px is None else _to_grid(heat_px).reshape(-1))
  arrays = {"bboxes": bboxes, "scores": scores, "obj_scale": scales, "kps_displacement_mean": displacement,
            "kps_heatmap_mean": heatmap, "kps": displacement, "clses": np.zeros((len(objects), 1))}
  return {name: np.asarray(rows, np.float32) for name, rows in arrays.items()}


@pytest.fixture(scope="module")
def scene():
  scale = np.array([0.6, 1.0, 0.8])
  first_px, first_rotation = _posed_object([0.3, -0.1, 4.0], 35.0, scale)
  second_px, _ = _posed_object([-1.2, 0.4, 6.0], -60.0, scale)
  objects = [
      (0.9, first_px, first_px, scale),  # the object, heatmap keypoints agree with the regression
      (0.8, first_px + 1.5, None, scale),  # a near-duplicate: soft-NMS drops it
      (0.25, second_px, None, scale),  # below the threshold
      (0.5, second_px, None, scale),  # a second object
  ]
  return _decoded(objects), first_px, first_rotation, second_px


@pytest.mark.parametrize("pnp_keypoints", ["displacement", "displacement+heatmap"])
def test_postprocess_recovers_the_poses(scene, pnp_keypoints):
  decoded, first_px, first_rotation, second_px = scene
  detections = postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3,
                                      opencv=True, pnp_keypoints=pnp_keypoints)
  assert [d.id for d in detections] == ["object_0", "object_1"]
  first, second = detections
  assert first.score == pytest.approx(0.9, abs=1e-6)
  assert second.score == pytest.approx(0.5, abs=1e-6)  # no overlap with the first object
  np.testing.assert_allclose(first.keypoints_2d, first_px, atol=1e-2)
  np.testing.assert_allclose(second.keypoints_2d, second_px, atol=1e-2)
  np.testing.assert_allclose(first.bbox, np.concatenate([first_px.min(0), first_px.max(0)]), atol=1e-2)
  # float32 grid coordinates limit the pose to ~1e-3 relative.
  np.testing.assert_allclose(first.pose.location, [0.3, -0.1, 4.0], atol=5e-3)
  np.testing.assert_allclose(geometry.quaternion_to_matrix(first.pose.quaternion_xyzw), first_rotation, atol=5e-3)
  np.testing.assert_allclose(second.pose.location, [-1.2, 0.4, 6.0], atol=1e-2)
  np.testing.assert_allclose(first.pose.projected_keypoints_2d[1:], first_px, atol=0.05)
  assert first.pose.keypoints_3d.shape == (9, 3)
  np.testing.assert_allclose(first.relative_scale, [0.6, 1.0, 0.8], atol=1e-6)


def test_postprocess_opengl_frame_and_no_pnp(scene):
  decoded = scene[0]
  args = (decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K)
  cv = postprocess_detections(*args, threshold=0.3, opencv=True)
  gl = postprocess_detections(*args, threshold=0.3, opencv=False)
  np.testing.assert_allclose(gl[0].pose.location, geometry.opencv_to_opengl(cv[0].pose.location), atol=1e-9)
  plain = postprocess_detections(*args, threshold=0.3, opencv=True, use_pnp=False)
  assert len(plain) == 2 and plain[0].pose is None
  with pytest.raises(ValueError, match="pnp_keypoints"):
    postprocess_detections(*args, threshold=0.3, opencv=True, pnp_keypoints="heatmap")


def test_postprocess_drops_detections_whose_pnp_fails(scene):
  decoded = {name: value.copy() for name, value in scene[0].items()}
  decoded["kps_displacement_mean"][3, 6:] = -10000.0  # only 3 corners left for the second object
  detections = postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3,
                                      opencv=True, pnp_keypoints="displacement")
  assert [d.id for d in detections] == ["object_0"]
  assert detections[0].score == pytest.approx(0.9, abs=1e-6)


def test_pnp_keypoints_option_chooses_the_points(scene):
  decoded = {name: value.copy() for name, value in scene[0].items()}
  decoded["kps_heatmap_mean"][0, 0::2] += 3.0  # heatmap corners of the first object 12 px to the right

  def run(mode):
    return postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3, opencv=True,
                                  pnp_keypoints=mode)[0]

  displacement_only, both = run("displacement"), run("displacement+heatmap")
  np.testing.assert_allclose(displacement_only.pose.location, [0.3, -0.1, 4.0], atol=5e-3)
  # With both kinds the solution sits between them: about half the 12-pixel shift (0.04 m at 4 m, f 600).
  shift_px = both.pose.projected_keypoints_2d[0, 0] - displacement_only.pose.projected_keypoints_2d[0, 0]
  assert 3.0 < shift_px < 9.0
  np.testing.assert_allclose(both.keypoints_2d, displacement_only.keypoints_2d)  # always displacement


def test_postprocess_without_candidates_gives_no_detections(scene):
  detections = postprocess_detections(scene[0], CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.95,
                                      opencv=True)
  assert detections == []


def test_a_known_object_height_makes_the_pose_metric(scene):
  """inference.object_height: the cuboid fitted with the relative scale (height 1.0 here) is scaled to the real
  height; its projections do not change."""
  decoded, first_px = scene[0], scene[1]
  relative = postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3, opencv=True)
  decoded = {name: value.copy() for name, value in decoded.items()}
  decoded["obj_scale"][:, 1] = 0.5  # a predicted height of 0.5 relative units
  halved = postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3, opencv=True)
  metric = postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3, opencv=False,
                                  object_height=0.36)
  factor = 0.36 / 0.5
  for plain, scaled in zip(halved, metric):
    np.testing.assert_allclose(scaled.pose.location, geometry.opencv_to_opengl(plain.pose.location) * factor, atol=1e-9)
    np.testing.assert_allclose(scaled.pose.projected_keypoints_2d, plain.pose.projected_keypoints_2d, atol=1e-9)
    height = np.linalg.norm(scaled.pose.keypoints_3d[3] - scaled.pose.keypoints_3d[1])
    assert height == pytest.approx(0.36, rel=1e-9)  # the box is 0.36 m high
  np.testing.assert_allclose(relative[0].pose.projected_keypoints_2d[1:], first_px, atol=0.05)
  decoded["obj_scale"][:, 1] = -0.5  # no metric pose for a non-positive predicted height: dropped
  assert postprocess_detections(decoded, CENTER, SCALE, OUTPUT_SIZE, CAMERA_K, threshold=0.3, opencv=True,
                                object_height=0.36) == []


def _logit(p):
  p = np.clip(p, 1e-4, 1 - 1e-4)
  return np.log(p / (1 - p))


def _heads_that_learned_the_targets(sample, output_size):
  """[1, h, w, C] head maps equal to a sample's training targets (copy 0): a network that learned them."""
  width, height = output_size
  heads = {"hm": _logit(sample["hm"][0])[None], "hm_hp": _logit(sample["hm_hp"][0])[None],
           "hp_offset": np.zeros((1, height, width, 2), np.float32)}
  for name, channels in (("wh", 2), ("reg", 2), ("hps", 16), ("scale", 3)):
    flat = np.zeros((height * width, channels), np.float32)
    for k in np.flatnonzero(sample["reg_mask"][0]):
      flat[sample["ind"][0, k]] = sample[name][0, k]
    heads[name] = flat.reshape(1, height, width, channels)
  return heads


def test_training_targets_decode_onto_the_labels_at_a_non_square_input(tmp_path):
  """One letterbox, one (width, height) convention: what the loader teaches at input (256, 384) on 240x320
  frames, decoded and post-processed by the inference path, lands on the labelled corners."""
  from centerpose_jax.data import loader  # pylint: disable=g-import-not-at-top
  from centerpose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  from centerpose_jax.inference import decode  # pylint: disable=g-import-not-at-top
  from configs import default  # pylint: disable=g-import-not-at-top
  synthetic.generate_dataset(tmp_path, "cereal_box", num_train=0, num_val=3, seed=4, width=240, height=320,
                             max_objects=2)
  dataset = default.get_config().dataset
  dataset.input_res, dataset.output_res = (256, 384), (64, 96)
  settings = loader.SampleSettings.from_config(dataset)
  decoder = jax.jit(lambda heads: decode(heads, num_select=20))
  source = loader.open_source(tmp_path / "val")
  errors = []
  for index in range(len(source)):
    sample, crop, (width, height) = loader.encode_sample(source[index], settings, rng=None)
    assert sample["input"].shape == (384, 256, 3) and sample["hm"].shape == (1, 96, 64, 1)
    decoded = {name: np.asarray(value)[0] for name, value in
               decoder(_heads_that_learned_the_targets(sample, settings.output_size)).items()}
    detections = postprocess_detections(decoded, crop.center, crop.scale, settings.output_size, None,
                                        threshold=0.3, opencv=True, use_pnp=False)
    assert len(detections) == int(sample["reg_mask"][0].sum()) >= 1
    labelled = [np.asarray(obj["projected_cuboid"])[1:] for obj in source[index].annotation["objects"]]
    for detection in detections:
      # The 2D MPE's units: mean corner distance to the nearest labelled object, in image widths / heights.
      errors.append(min(np.linalg.norm((detection.keypoints_2d - corners) / (width, height), axis=1).mean()
                        for corners in labelled))
  # Targets are whole grid cells (4 input pixels = 3.75 image pixels here): about 1% of the image.
  assert max(errors) < 0.02, errors
