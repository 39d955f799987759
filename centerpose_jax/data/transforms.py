"""Affine letterbox and normalisation shared by training, evaluation and inference.

All points are OpenCV pixel coordinates (x = column, y = row). Images are BGR uint8 [H, W, 3] as cv2 decodes
them; network inputs are float32 NHWC [h, w, 3] in BGR order, normalised with the CenterNet statistics.
"""

import cv2
import numpy as np


def _rotate_2d(vector, angle_rad):
  sin, cos = np.sin(angle_rad), np.cos(angle_rad)
  return np.array([vector[0] * cos - vector[1] * sin, vector[0] * sin + vector[1] * cos])


def _third_point(a, b):
  """The point completing a right angle at `b`: b + (a - b) rotated by +90 degrees."""
  direction = a - b
  return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def affine_transform_matrix(center, scale, rot_deg, output_size, inverse=False) -> np.ndarray:
  """[2, 3] affine (float64) mapping a square of side `scale` around `center` onto an output image, as TAO.

  TAO's `get_affine_transform`: `center` (pixels, [2]) goes to the output centre, a length `scale` (pixels)
  becomes the output width, and the source is rotated by `rot_deg` degrees. Built like TAO from three float32
  point pairs through `cv2.getAffineTransform`, so the matrices equal TAO's to the last bit. Without rotation it
  is x_out = w/2 + (x - c_x) * w / scale (same for y with the output width, so non-square outputs keep aspect).

  Args:
    center: [2] source centre (x, y) in pixels.
    scale: source side length in pixels (a scalar).
    rot_deg: rotation in degrees.
    output_size: (width, height) of the output image in pixels.
    inverse: return the output -> source map instead.
  """
  out_w, out_h = float(output_size[0]), float(output_size[1])
  center = np.asarray(center, dtype=np.float32)
  source_dir = _rotate_2d([0.0, float(scale) * -0.5], np.pi * rot_deg / 180.0)
  source = np.zeros((3, 2), dtype=np.float32)
  target = np.zeros((3, 2), dtype=np.float32)
  source[0] = center
  source[1] = center + source_dir
  target[0] = [out_w * 0.5, out_h * 0.5]
  target[1] = target[0] + np.array([0.0, out_w * -0.5], dtype=np.float32)
  source[2] = _third_point(source[0], source[1])
  target[2] = _third_point(target[0], target[1])
  if inverse:
    return cv2.getAffineTransform(target, source)
  return cv2.getAffineTransform(source, target)


def apply_affine(points, matrix) -> np.ndarray:
  """[N, 2] float64 points mapped by a [2, 3] affine; `points` [N, 2] in the matrix's source frame."""
  points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
  matrix = np.asarray(matrix, dtype=np.float64)
  return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image, matrix, output_size) -> np.ndarray:
  """`image` warped by the [2, 3] affine into (width, height) `output_size`: bilinear, black border (TAO)."""
  return cv2.warpAffine(image, matrix, (int(output_size[0]), int(output_size[1])), flags=cv2.INTER_LINEAR)


def normalize_image(image, mean, std, color_transform=None) -> np.ndarray:
  """float32 [H, W, 3] network input: (C (image / 255) + c - mean) / std per pixel, in BGR order.

  Args:
    image: uint8 (or float in [0, 255]) BGR image [H, W, 3].
    mean, std: [3] BGR statistics in [0, 1] units.
    color_transform: optional per-pixel colour affine (C [3, 3], c [3]) in [0, 1] units, applied before the
      mean/std (see `augment.color_transform`); None is the identity.

  All steps are folded into one 3x4 matrix applied by cv2.transform (a single pass over the image).
  """
  matrix, offset = (np.eye(3), np.zeros(3)) if color_transform is None else color_transform
  std = np.asarray(std, dtype=np.float64)
  combined = np.empty((3, 4))
  combined[:, :3] = np.asarray(matrix, dtype=np.float64) / (255.0 * std[:, None])
  combined[:, 3] = (np.asarray(offset, dtype=np.float64) - np.asarray(mean, dtype=np.float64)) / std
  return cv2.transform(np.asarray(image, dtype=np.float32), combined)


def letterbox(image_size, input_size):
  """The letterbox of an image into the network input: the whole image, centred, aspect ratio kept.

  The one letterbox of training (the base of every crop), evaluation and inference. For a square input it is
  TAO's: centre (W/2, H/2) and side max(W, H). For a non-square input the side (the source length mapped onto
  the input width, see `affine_transform_matrix`) is max(W, H * input_w / input_h), so that the image fits both
  ways.

  Args:
    image_size: (width, height) of the image in pixels.
    input_size: (width, height) of the network input in pixels.

  Returns:
    (center [2] float32 (x, y) image pixels, scale: the side in image pixels).
  """
  width, height = image_size
  input_width, input_height = input_size
  scale = max(float(width), float(height) * input_width / input_height)
  return np.array([width / 2.0, height / 2.0], dtype=np.float32), scale
