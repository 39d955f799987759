"""Training augmentation as TAO (reference-behavior §2.2), with one numpy Generator per sample.

Every random draw of a sample comes from the Generator the caller passes (the loader derives it from
(seed, epoch, sample index)), so runs are reproducible and worker processes never share a sequence. TAO instead
draws crops from the global numpy state and colours from one `RandomState(123)` copied into every worker, so
all workers replay the same colour sequence; that quirk is not reproduced.
"""

import dataclasses

import cv2
import numpy as np

from centerpose_jax.data import transforms

# TAO's random-crop scale factors, np.arange(0.6, 1.4, 0.1): 8 values from 0.6 to 1.3.
CROP_SCALE_FACTORS = np.arange(0.6, 1.4, 0.1)
CROP_BORDER = 128  # pixels; halved until it fits the image (TAO `_get_border`)
COLOR_JITTER = 0.4  # brightness / contrast / saturation factors are 1 + U(-0.4, 0.4)
LIGHTING_STD = 0.1  # PCA lighting coefficients ~ N(0, 0.1)
GRAY_WEIGHTS_BGR = (0.114, 0.587, 0.299)  # cv2.COLOR_BGR2GRAY


@dataclasses.dataclass(frozen=True)
class CropParams:
  """Where a sample's input is cut from the (possibly flipped) image.

  Attributes:
    center: [2] float32 crop centre (x, y) in pixels of the flipped image when `flipped`.
    scale: side of the square crop in pixels (maps to the input width).
    rot_deg: rotation in degrees.
    flipped: the image is mirrored horizontally before the crop.
  """
  center: np.ndarray
  scale: float
  rot_deg: float
  flipped: bool


def crop_border(border, size) -> int:
  """TAO's `_get_border`: `border` halved until `size - border > border` (pixels)."""
  divisor = 1
  while size - border // divisor <= border // divisor:
    divisor *= 2
  return border // divisor


def letterbox_crop(width, height, *, input_size) -> CropParams:
  """The whole image of `width` x `height` pixels letterboxed into `input_size` (width, height) pixels
  (`transforms.letterbox`; evaluation and inference)."""
  center, scale = transforms.letterbox((width, height), input_size)
  return CropParams(center=center, scale=scale, rot_deg=0.0, flipped=False)


def sample_crop(rng, width, height, *, input_size, random_crop=True, flip_probability=0.5,
                rotation_probability=0.0, max_rotation_deg=0.0) -> CropParams:
  """A training crop as TAO draws it (§2.2), from the numpy Generator `rng`.

  Args:
    rng: np.random.Generator for this sample.
    width, height: image size in pixels.
    input_size: (width, height) of the network input in pixels.
    random_crop: TAO's default (`not_rand_crop=False`): side = the letterbox side (max(H, W) for a square
      input) times one of `CROP_SCALE_FACTORS`, centre uniform over the image minus `crop_border`. False keeps
      the letterbox (`letterbox_crop`), i.e. TAO's `not_rand_crop=True` path with shift = scale = 0, as the
      reference fixtures were made.
    flip_probability: chance of a horizontal flip (the centre x becomes W - x - 1).
    rotation_probability: chance (`dataset.aug_rot`) of a rotation drawn from U(-max, max) degrees.
    max_rotation_deg: the rotation bound in degrees.
  """
  crop = letterbox_crop(width, height, input_size=input_size)
  center, scale = crop.center.copy(), crop.scale
  if random_crop:
    scale *= float(rng.choice(CROP_SCALE_FACTORS))
    border_x, border_y = crop_border(CROP_BORDER, width), crop_border(CROP_BORDER, height)
    center[0] = rng.integers(border_x, width - border_x)
    center[1] = rng.integers(border_y, height - border_y)
  rot_deg = 0.0
  if rng.random() < rotation_probability:
    rot_deg = float(rng.uniform(-max_rotation_deg, max_rotation_deg))
  flipped = bool(rng.random() < flip_probability)
  if flipped:
    center[0] = width - center[0] - 1
  return CropParams(center=center, scale=scale, rot_deg=rot_deg, flipped=flipped)


def color_transform(rng, channel_means, eig_val, eig_vec):
  """TAO's colour augmentation as one per-pixel affine x -> C x + c on BGR values in [0, 1] units.

  TAO applies, in a random order, brightness x <- a x, contrast x <- a x + (1 - a) mean(g0) and saturation
  x <- a x + (1 - a) g0, each with a = 1 + U(-0.4, 0.4), where g0 is the grey level of the pixel before any of
  them (cv2 BGR2GRAY weights, so linear in the pixel); then PCA lighting x += eig_vec @ (eig_val * N(0, 0.1)).
  All are affine in the original pixel, so they compose into (C [3, 3], c [3]); no clipping, as TAO.

  Args:
    rng: np.random.Generator of the sample.
    channel_means: [3] mean B, G, R of the image in [0, 1] units (gives mean(g0)).
    eig_val: [3] PCA eigenvalues; eig_vec: [3, 3] eigenvectors (rows as in TAO's config).
  """
  gray_row = np.asarray(GRAY_WEIGHTS_BGR)[None, :]
  gray_mean = float(gray_row[0] @ np.asarray(channel_means, dtype=np.float64))
  matrix, offset = np.eye(3), np.zeros(3)
  for operation in rng.permutation(3):
    alpha = 1.0 + rng.uniform(-COLOR_JITTER, COLOR_JITTER)
    matrix, offset = alpha * matrix, alpha * offset
    if operation == 1:  # contrast
      offset = offset + (1 - alpha) * gray_mean
    elif operation == 2:  # saturation: blend with the original grey level
      matrix = matrix + (1 - alpha) * np.ones((3, 1)) @ gray_row
  coefficients = rng.normal(scale=LIGHTING_STD, size=3)
  offset = offset + np.asarray(eig_vec, dtype=np.float64) @ (np.asarray(eig_val, dtype=np.float64) * coefficients)
  return matrix, offset


def make_input(image_bgr, crop: CropParams, input_size, mean, std, *, rng=None, eig_val=None,
               eig_vec=None) -> np.ndarray:
  """The network input of a crop: float32 [h, w, 3] normalised BGR (NHWC without the batch axis).

  Args:
    image_bgr: uint8 [H, W, 3] decoded image (unflipped).
    crop: where to cut (see `sample_crop` / `letterbox_crop`).
    input_size: (width, height) of the input in pixels.
    mean, std: [3] BGR statistics in [0, 1] units.
    rng: when given, TAO's colour augmentation (`color_transform`) with `eig_val` [3] and `eig_vec` [3, 3],
      computed on the warped crop as TAO does.
  """
  if crop.flipped:
    image_bgr = cv2.flip(image_bgr, 1)  # mirror left-right (much faster than copying a negative-stride view)
  matrix = transforms.affine_transform_matrix(crop.center, crop.scale, crop.rot_deg, input_size)
  warped = transforms.warp_image(image_bgr, matrix, input_size)
  color = None
  if rng is not None:
    color = color_transform(rng, np.asarray(cv2.mean(warped)[:3]) / 255.0, eig_val, eig_vec)
  return transforms.normalize_image(warped, mean, std, color)
