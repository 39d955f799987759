"""Training augmentation: TAO's crop rule, colour jitter as one affine, reproducible draws."""

import cv2
import numpy as np

from centerpose_jax.data import augment
from configs import default


def _sequential_color_jitter(rng, image, eig_val, eig_vec):
  """TAO's colour augmentation step by step, in place, on a float [0, 1] BGR image (the reference)."""
  gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
  gray_mean = gray.mean()
  for operation in rng.permutation(3):
    alpha = 1.0 + rng.uniform(-augment.COLOR_JITTER, augment.COLOR_JITTER)
    if operation == 0:
      image *= alpha
    elif operation == 1:
      image[:] = alpha * image + (1 - alpha) * gray_mean
    else:
      image[:] = alpha * image + (1 - alpha) * gray[:, :, None]
  image += np.asarray(eig_vec) @ (np.asarray(eig_val) * rng.normal(scale=augment.LIGHTING_STD, size=3))


def test_color_transform_equals_the_sequential_operations():
  dataset = default.get_config().dataset
  image = np.random.default_rng(1).integers(0, 256, (32, 32, 3)).astype(np.uint8)
  for seed in range(6):  # covers all operation orders
    reference = image.astype(np.float32) / 255.0
    _sequential_color_jitter(np.random.default_rng(seed), reference, dataset.eig_val, dataset.eig_vec)
    matrix, offset = augment.color_transform(np.random.default_rng(seed),
                                             image.reshape(-1, 3).mean(axis=0) / 255.0, dataset.eig_val,
                                             dataset.eig_vec)
    found = (image.astype(np.float64) / 255.0) @ matrix.T + offset
    np.testing.assert_allclose(found, reference, atol=2e-6)
    # The network input applies it before mean/std in one pass (a square letterbox to its own size is the identity).
    crop = augment.letterbox_crop(32, 32, input_size=(32, 32))
    normalised = augment.make_input(image, crop, (32, 32), dataset.mean, dataset.std,
                                    rng=np.random.default_rng(seed), eig_val=dataset.eig_val,
                                    eig_vec=dataset.eig_vec)
    np.testing.assert_allclose(normalised, (reference - dataset.mean) / np.asarray(dataset.std), atol=1e-5)


def test_random_crop_follows_tao_rules():
  assert np.allclose(augment.CROP_SCALE_FACTORS, [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3])
  assert augment.crop_border(128, 800) == 128
  assert augment.crop_border(128, 200) == 64  # 200 - 128 <= 128, so halved
  assert augment.crop_border(128, 100) == 32
  scales, centers = set(), []
  for index in range(200):
    crop = augment.sample_crop(np.random.default_rng([7, 0, index]), 600, 800, input_size=(512, 512),
                               flip_probability=0.0)
    scales.add(round(crop.scale / 800, 6))
    centers.append(crop.center)
    assert crop.rot_deg == 0.0 and not crop.flipped
  assert scales == {round(f, 6) for f in augment.CROP_SCALE_FACTORS}
  centers = np.array(centers)
  assert centers[:, 0].min() >= 128 and centers[:, 0].max() < 600 - 128
  assert centers[:, 1].min() >= 128 and centers[:, 1].max() < 800 - 128


def test_draws_depend_only_on_the_generator():
  first = augment.sample_crop(np.random.default_rng([1, 2, 3]), 640, 480, input_size=(512, 512),
                              rotation_probability=0.5, max_rotation_deg=30.0)
  again = augment.sample_crop(np.random.default_rng([1, 2, 3]), 640, 480, input_size=(512, 512),
                              rotation_probability=0.5, max_rotation_deg=30.0)
  assert np.array_equal(first.center, again.center) and first.scale == again.scale
  assert first.rot_deg == again.rot_deg and first.flipped == again.flipped
  flips = [augment.sample_crop(np.random.default_rng([1, 0, i]), 640, 480, input_size=(512, 512)).flipped
           for i in range(400)]
  assert 150 < sum(flips) < 250  # flip probability 0.5
  rotations = [augment.sample_crop(np.random.default_rng([1, 0, i]), 640, 480, input_size=(512, 512),
                                   rotation_probability=0.5, max_rotation_deg=30.0).rot_deg for i in range(400)]
  assert 150 < np.count_nonzero(rotations) < 250 and max(np.abs(rotations)) <= 30.0
