"""Targets and inputs against TAO's own encoding (tao_reference/targets), flips and symmetry copies."""

import copy
import json

import cv2
import numpy as np
import pytest

from centerpose_jax import geometry
from centerpose_jax.data import augment
from centerpose_jax.data import discovery
from centerpose_jax.data import loader
from centerpose_jax.data import targets
from centerpose_jax.data import transforms
from configs import default

SAMPLES = ("t01_real_chair_S4", "t02_real_chair_S1", "t03_synth_single", "t04_synth_corner_outside",
           "t05_synth_three_objects", "t06_synth_bottle_S12", "t07_synth_three_objects_flip")
INTEGER_KEYS = ("ind", "hp_ind", "reg_mask", "hps_mask", "hp_mask")
CHANNEL_MAPS = ("hm", "hm_hp")  # stored [S, C, R, R] by TAO, [S, R, R, C] here


def _fixture_config(category, flipped):
  """The dataset settings the fixtures were made with (GEOMETRY.md, targets/): the category's config (chair 4 and
  bottle 12 symmetry copies, as TAO hard-codes them)."""
  dataset = default.get_category_config(category).dataset
  dataset.not_rand_crop = True
  dataset.no_color_aug = True
  dataset.flip = 1.0 if flipped else 0.0
  return dataset


def _raw(folder):
  return discovery.RawSample((folder / "frame.png").read_bytes(), json.loads((folder / "frame.json").read_text()),
                             str(folder / "frame.png"))


@pytest.fixture(scope="module")
def index(tao_reference):
  return {entry["sample"]: entry for entry in json.loads((tao_reference / "targets" / "index.json").read_text())}


@pytest.mark.parametrize("name", SAMPLES)
def test_sample_matches_tao(tao_reference, index, name):
  folder = tao_reference / "targets" / name
  expected = np.load(folder / "targets.npz")
  flipped = bool(expected["flipped"])
  assert index[name]["flip_forced"] == flipped
  settings = loader.SampleSettings.from_config(_fixture_config(index[name]["category"], flipped))
  assert settings.num_symmetry == int(expected["num_symmetry"])
  sample, crop, _ = loader.encode_sample(_raw(folder), settings, rng=np.random.default_rng(0))

  np.testing.assert_allclose(crop.center, expected["c"], atol=0)
  assert crop.scale == float(expected["s"]) and crop.rot_deg == float(expected["rot"])
  assert crop.flipped == flipped
  for size, key in ((512, "trans_input"), (128, "trans_output")):
    np.testing.assert_array_equal(
        transforms.affine_transform_matrix(crop.center, crop.scale, crop.rot_deg, (size, size)), expected[key])

  np.testing.assert_allclose(sample["input"], expected["input"].transpose(1, 2, 0), atol=1e-2)
  assert sample["sample_weight"] == 1.0
  for key in targets.TARGET_KEYS:
    reference = expected[key].transpose(0, 2, 3, 1) if key in CHANNEL_MAPS else expected[key]
    assert sample[key].shape == reference.shape, key
    if key in INTEGER_KEYS:
      np.testing.assert_array_equal(sample[key], reference, err_msg=key)
    else:
      np.testing.assert_allclose(sample[key], reference, atol=1e-5, rtol=0, err_msg=key)


def _front_facing_box_label():
  """A box 2 m in front of the camera, object x along image x: corners 1-4 (x-) left of corners 5-8 (x+)."""
  camera_k = geometry.camera_matrix(500.0, 500.0, 320.0, 240.0)
  points = geometry.cuboid_vertices([0.6, 0.4, 0.3]) + np.array([0.1, 0.05, 2.0])
  return {"camera_data": {"intrinsics": {"fx": 500.0, "fy": 500.0, "cx": 320.0, "cy": 240.0}},
          "objects": [{"projected_cuboid": geometry.project_with_intrinsics(points, camera_k).tolist(),
                       "scale": [0.6, 0.4, 0.3]}]}


def _grid_keypoints(encoded):
  """[8, 2] integer grid positions of object 0's joints (copy 0), from ind and hps."""
  center = np.array([encoded["ind"][0, 0] % 128, encoded["ind"][0, 0] // 128])
  return encoded["hps"][0, 0].reshape(8, 2) + center


def test_flip_mirrors_and_permutes_corners():
  label = _front_facing_box_label()
  crops = {flipped: augment.sample_crop(np.random.default_rng(0), 640, 480, input_size=(512, 512), random_crop=False,
                                        flip_probability=float(flipped)) for flipped in (False, True)}
  encoded = {flipped: targets.encode_targets(label, 640, 480, crop, num_symmetry=1, max_objs=10,
                                             output_size=(128, 128))
             for flipped, crop in crops.items()}
  for flipped in (False, True):
    keypoints = _grid_keypoints(encoded[flipped])
    assert encoded[flipped]["hps_mask"].sum() == 16
    # x- corners (joints 0-3) stay left of x+ corners (joints 4-7): the labels follow the mirrored box.
    assert keypoints[:4, 0].max() < keypoints[4:, 0].min()
  plain, mirrored = _grid_keypoints(encoded[False]), _grid_keypoints(encoded[True])
  permutation = geometry.flip_permutation()
  np.testing.assert_array_equal(permutation, [4, 5, 6, 7, 0, 1, 2, 3])
  np.testing.assert_array_equal(mirrored[:, 1], plain[permutation, 1])  # rows unchanged
  # Columns mirror about the grid centre (up to the integer truncations).
  assert np.abs(mirrored[:, 0] + plain[permutation, 0] - 128).max() <= 2


def test_flipped_input_is_the_mirrored_image(tao_reference):
  folder = tao_reference / "targets" / "t05_synth_three_objects"
  image = cv2.imread(str(folder / "frame.png"))
  dataset = default.get_config().dataset
  crop = augment.sample_crop(np.random.default_rng(0), image.shape[1], image.shape[0], input_size=(512, 512),
                             random_crop=False, flip_probability=1.0)
  flipped = augment.make_input(image, crop, (512, 512), dataset.mean, dataset.std)
  mirrored_image = augment.make_input(image[:, ::-1].copy(), augment.CropParams(crop.center, crop.scale, 0.0, False),
                                      (512, 512), dataset.mean, dataset.std)
  np.testing.assert_array_equal(flipped, mirrored_image)


@pytest.fixture(scope="module")
def chair_label(tao_reference):
  return json.loads((tao_reference / "targets" / "t01_real_chair_S4" / "frame.json").read_text())


def _encode(label, num_symmetry):
  crop = augment.letterbox_crop(600, 800, input_size=(512, 512))
  return targets.encode_targets(label, 600, 800, crop, num_symmetry=num_symmetry, max_objs=10,
                                output_size=(128, 128))


def test_symmetry_copies_rotate_about_the_object_up_axis(chair_label):
  obj, projection = chair_label["objects"][0], chair_label["camera_data"]["camera_projection_matrix"]
  annotated = np.asarray(obj["projected_cuboid"])
  copies = [targets.symmetric_copy_cuboid(obj, projection, i, 4, 600, 800) for i in range(4)]
  # Copy 0 is the annotation re-projected through P (the real label agrees to about 1 px).
  assert np.abs(copies[0] - annotated).max() <= 2
  for i, cuboid in enumerate(copies):
    assert cuboid.dtype == np.int64
    np.testing.assert_array_equal(cuboid[0], copies[0][0])  # the centre lies on the rotation axis
    # Copy i: keypoints_3d turned by i quarter turns about the object's y axis, projected through P, truncated.
    rotated = geometry.apply_transform(
        geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
        @ geometry.rotation_about_y(np.pi / 2 * i)
        @ np.linalg.inv(geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])),
        np.asarray(obj["keypoints_3d"]))
    pixels = geometry.project_with_projection_matrix(rotated, np.asarray(projection), 600, 800)
    np.testing.assert_array_equal(cuboid, np.trunc(pixels).astype(np.int64))


def test_symmetric_key_sets_the_copy_count_per_object(chair_label):
  assert default.get_category_config("chair").dataset.num_symmetry == 4
  assert default.get_category_config("bottle").dataset.num_symmetry == 12
  assert default.get_category_config("shoe").dataset.num_symmetry == 1
  label = copy.deepcopy(chair_label)
  all_copies = _encode(label, 4)["reg_mask"][:, 0]
  np.testing.assert_array_equal(all_copies, [1, 1, 1, 1])

  for value in ("False", True):  # anything but the string 'True' gives one copy (a JSON true included)
    label["objects"][0]["symmetric"] = value
    encoded = _encode(label, 4)
    np.testing.assert_array_equal(encoded["reg_mask"][:, 0], [1, 0, 0, 0])
    # The single copy uses the annotated projected_cuboid, as with S = 1.
    np.testing.assert_array_equal(encoded["hps"][0], _encode(chair_label, 1)["hps"][0])

  label["objects"][0]["symmetric"] = "True"
  bottle = _encode(label, 12)  # 4 copies, in steps of 2π / 12 as TAO
  np.testing.assert_array_equal(bottle["reg_mask"][:, 0], [1] * 4 + [0] * 8)
  full = _encode(chair_label, 12)
  for key in targets.TARGET_KEYS:
    np.testing.assert_array_equal(bottle[key][:4], full[key][:4], err_msg=key)


def test_gaussian_peak_is_one_and_clipped_at_the_border():
  heatmap = np.zeros((16, 16), np.float32)
  targets.draw_gaussian(heatmap, (0, 15), 3)
  assert heatmap[15, 0] == 1.0 and heatmap.max() == 1.0
  assert np.count_nonzero(heatmap) == 4 * 4  # a 7x7 kernel cut to its quarter in the corner
  np.testing.assert_allclose(heatmap[15, 1], np.exp(-1 / (2 * (7 / 6) ** 2)), rtol=1e-6)


def test_center_3d_puts_the_peak_at_the_projected_centre(tao_reference):
  label = json.loads((tao_reference / "targets" / "t05_synth_three_objects" / "frame.json").read_text())
  crop = augment.letterbox_crop(640, 480, input_size=(512, 512))
  encoded = targets.encode_targets(label, 640, 480, crop, num_symmetry=1, max_objs=10, output_size=(128, 128),
                                   center_3d=True)
  to_grid = transforms.affine_transform_matrix(crop.center, crop.scale, 0.0, (128, 128))
  for k, obj in enumerate(label["objects"]):
    center = transforms.apply_affine(np.float32(obj["projected_cuboid"][0]), to_grid)[0]
    assert encoded["reg_mask"][0, k] == 1
    assert encoded["ind"][0, k] == int(center[1]) * 128 + int(center[0])
    np.testing.assert_allclose(encoded["reg"][0, k], center - np.trunc(center), atol=1e-5)
  # A centre pushed off the grid drops the object (TAO: "do not consider objects whose center is out").
  label["objects"][0]["projected_cuboid"][0] = [700.0, 100.0]
  dropped = targets.encode_targets(label, 640, 480, crop, num_symmetry=1, max_objs=10, output_size=(128, 128),
                                   center_3d=True)
  np.testing.assert_array_equal(dropped["reg_mask"][0, :3], [0, 1, 1])


def test_training_uses_the_configured_num_symmetry():
  """The category defaults live in the category configs only: a chair config set to 1 copy gets 1 copy."""
  dataset = default.get_category_config("chair").dataset
  assert loader.SampleSettings.from_config(dataset).num_symmetry == 4
  dataset.num_symmetry = 1
  assert loader.SampleSettings.from_config(dataset).num_symmetry == 1
  assert not hasattr(targets, "CATEGORY_SYMMETRY")
