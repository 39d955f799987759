"""Training targets exactly as TAO encodes them (reference-behavior §2.5-§2.6), in NHWC.

Shapes for one sample (S = symmetry copies, M = max_objs, J = 8 joints, output grid (w, h) = input / 4):
  hm [S, h, w, 1], hm_hp [S, h, w, J], wh / reg [S, M, 2], scale [S, M, 3], hps / hps_mask [S, M, 2J],
  ind / reg_mask [S, M], hp_offset [S, M*J, 2], hp_ind / hp_mask [S, M*J].
Index arrays are int32 and masks float32; `ind` and `hp_ind` index the flattened grid as y * w + x.

TAO's quirks are kept on purpose: 2D corners are truncated to integers in image pixels and again on the grid
(so `hps` are integers and `hp_offset` is always 0); the centre is the centre of the clipped 2D corner box
(`center_3D=False`); the Gaussian radius uses CenterNet's `gaussian_radius` with its unnormalised roots; the
symmetry copies' angle step is 2π / S even when an object's `symmetric` key sets 4 copies.
Two deliberate differences: an object's `symmetric` key affects only that object (in TAO it leaks into the
objects after it), and an object never gets more copies than S (TAO raises an IndexError).
"""

import functools
import math
from typing import Dict

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.data import transforms
from centerpose_jax.data.augment import CropParams

SYMMETRIC_OBJECT_COPIES = 4  # copies of an object whose `symmetric` key is 'True'
GAUSSIAN_MIN_OVERLAP = 0.7
TARGET_KEYS = ("hm", "hm_hp", "wh", "reg", "scale", "hps", "hps_mask", "ind", "reg_mask", "hp_offset",
               "hp_ind", "hp_mask")


def gaussian_radius(height, width, min_overlap=GAUSSIAN_MIN_OVERLAP) -> float:
  """CenterNet's heatmap radius (grid cells) for a box of `height` x `width`, with its known quirk.

  The three quadratic roots are written (b + sqrt(b^2 - 4ac)) / 2, without dividing by a, as in CenterNet and
  TAO; the smallest is returned.
  """
  b1 = height + width
  c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
  r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
  b2 = 2 * (height + width)
  c2 = (1 - min_overlap) * width * height
  r2 = (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2
  a3 = 4 * min_overlap
  b3 = -2 * min_overlap * (height + width)
  c3 = (min_overlap - 1) * width * height
  r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
  return min(r1, r2, r3)


@functools.lru_cache(maxsize=256)
def _gaussian_kernel(radius: int) -> np.ndarray:
  """[2r+1, 2r+1] float64 kernel exp(-(x^2+y^2) / (2 sigma^2)), sigma = (2r+1) / 6, tiny values zeroed."""
  diameter = 2 * radius + 1
  sigma = diameter / 6
  offsets = np.arange(-radius, radius + 1, dtype=np.float64)
  kernel = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma * sigma))
  kernel[kernel < np.finfo(kernel.dtype).eps * kernel.max()] = 0
  kernel.flags.writeable = False
  return kernel


def draw_gaussian(heatmap, center, radius: int) -> None:
  """CenterNet's `draw_umich_gaussian`: max-merges a Gaussian of `radius` at integer `center` (x, y) into the
  [H, W] `heatmap` (a view is fine), clipped at the borders; the peak is exactly 1."""
  kernel = _gaussian_kernel(radius)
  x, y = int(center[0]), int(center[1])
  height, width = heatmap.shape[:2]
  left, right = min(x, radius), min(width - x, radius + 1)
  top, bottom = min(y, radius), min(height - y, radius + 1)
  region = heatmap[y - top:y + bottom, x - left:x + right]
  patch = kernel[radius - top:radius + bottom, radius - left:radius + right]
  if min(patch.shape) > 0 and min(region.shape) > 0:
    np.maximum(region, patch, out=region)


def _affine_points(points, matrix) -> np.ndarray:
  """[N, 2] float64: TAO's `affine_transform` (each point cast to float32, then the float64 matrix applied)."""
  homogeneous = np.ones((len(points), 3), dtype=np.float32)
  homogeneous[:, :2] = points
  return homogeneous.astype(np.float64) @ np.asarray(matrix, dtype=np.float64).T


def symmetric_copy_cuboid(obj, projection_matrix, copy_index, num_symmetry, width, height) -> np.ndarray:
  """[9, 2] int64 pixels: the object's cuboid rotated by 2π/S * copy_index about its own y axis, re-projected.

  Uses the object's `keypoints_3d`, `location` and `quaternion_xyzw` (OpenGL camera frame) and the 4x4
  Objectron projection matrix with its row/column swap (geometry.project_with_projection_matrix); pixels are
  truncated toward zero as TAO does.
  """
  object_to_camera = geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
  rotation = geometry.rotation_about_y(2 * np.pi / num_symmetry * copy_index)
  transform = np.asarray(projection_matrix, dtype=np.float64) @ object_to_camera @ rotation @ np.linalg.inv(
      object_to_camera)
  pixels = geometry.project_with_projection_matrix(np.asarray(obj["keypoints_3d"], dtype=np.float64), transform,
                                                   width, height)
  return np.trunc(pixels).astype(np.int64)


def object_copies(obj, num_symmetry: int) -> int:
  """How many symmetry copies object `obj` gets (its `symmetric` key, if any, else S), at most S."""
  if "symmetric" in obj:
    return min(SYMMETRIC_OBJECT_COPIES if obj["symmetric"] == "True" else 1, num_symmetry)
  return num_symmetry


def empty_targets(num_symmetry, max_objs, num_joints, output_size) -> Dict[str, np.ndarray]:
  """All-zero targets of one sample (shapes in the module docstring); `output_size` (w, h) of the grid."""
  s, m, j, (w, h) = num_symmetry, max_objs, num_joints, output_size
  return {
      "hm": np.zeros((s, h, w, 1), np.float32), "hm_hp": np.zeros((s, h, w, j), np.float32),
      "wh": np.zeros((s, m, 2), np.float32), "reg": np.zeros((s, m, 2), np.float32),
      "scale": np.zeros((s, m, 3), np.float32), "hps": np.zeros((s, m, 2 * j), np.float32),
      "hps_mask": np.zeros((s, m, 2 * j), np.float32), "ind": np.zeros((s, m), np.int32),
      "reg_mask": np.zeros((s, m), np.float32), "hp_offset": np.zeros((s, m * j, 2), np.float32),
      "hp_ind": np.zeros((s, m * j), np.int32), "hp_mask": np.zeros((s, m * j), np.float32),
  }


def encode_targets(annotation, width: int, height: int, crop: CropParams, *, num_symmetry: int, max_objs: int,
                   output_size, flip_idx=geometry.FLIP_IDX, center_3d: bool = False, obj_scale: bool = True,
                   use_absolute_scale: bool = False, num_joints: int = 8) -> Dict[str, np.ndarray]:
  """The targets of one labelled image (shapes in the module docstring).

  Args:
    annotation: the parsed CenterPose JSON label (validated by `annotations.validate_annotation`).
    width, height: size of the decoded image in pixels (not the JSON's).
    crop: the crop the input was made with (`augment.sample_crop` / `augment.letterbox_crop`).
    num_symmetry: S (`dataset.num_symmetry`).
    max_objs: M; objects after the first M are ignored.
    output_size: (w, h) of the output grid (the input size / 4).
    flip_idx: 1-based corner pairs swapped by a horizontal flip.
    center_3d: put the centre at the projected 3D centre (`projected_cuboid[0]`) instead of the 2D box centre.
    obj_scale, use_absolute_scale: scale target |scale| / scale[1] (or |scale|), or none.
    num_joints: J, the 8 cuboid corners.
  """
  grid_w, grid_h = output_size
  maps = empty_targets(num_symmetry, max_objs, num_joints, output_size)
  heatmaps = np.zeros((num_symmetry, 1, grid_h, grid_w), np.float32)  # drawn [S, C, h, w], stored NHWC
  joint_heatmaps = np.zeros((num_symmetry, num_joints, grid_h, grid_w), np.float32)
  to_grid = transforms.affine_transform_matrix(crop.center, crop.scale, crop.rot_deg, output_size)
  flip_order = geometry.flip_permutation(flip_idx, num_joints)
  projection = annotation.get("camera_data", {}).get("camera_projection_matrix")
  for k, obj in enumerate(annotation["objects"][:max_objs]):
    copies = object_copies(obj, num_symmetry)
    for copy_index in range(copies):
      if copies == 1:
        cuboid = np.asarray(obj["projected_cuboid"], dtype=np.float64)
      else:
        cuboid = symmetric_copy_cuboid(obj, projection, copy_index, num_symmetry, width, height)
      _encode_object(maps, heatmaps[copy_index, 0], joint_heatmaps[copy_index], copy_index, k, obj, cuboid,
                     width, height, crop, to_grid, flip_order, output_size, center_3d, obj_scale,
                     use_absolute_scale)
  maps["hm"] = np.ascontiguousarray(heatmaps.transpose(0, 2, 3, 1))
  maps["hm_hp"] = np.ascontiguousarray(joint_heatmaps.transpose(0, 2, 3, 1))
  return maps


def _object_scale(scale, use_absolute_scale) -> np.ndarray:
  scale = np.asarray(scale, dtype=np.float64)
  return np.abs(scale) if use_absolute_scale else np.abs(scale) / scale[1]


def _encode_object(maps, heatmap, joint_heatmaps, s, k, obj, cuboid, width, height, crop, to_grid, flip_order,
                   output_size, center_3d, obj_scale, use_absolute_scale) -> None:
  """Writes copy `s` of object `k` into `maps` and the [h, w] / [J, h, w] heatmaps (TAO data_feeder l.256-408).

  `cuboid` [9, 2] pixels: centre then the 8 corners, float (annotation) or int (re-projected copy).
  """
  corners = cuboid[1:]
  inside = (corners[:, 0] >= 0) & (corners[:, 0] < width) & (corners[:, 1] >= 0) & (corners[:, 1] < height)
  points = np.trunc(corners).astype(np.int64)  # TAO stores the pixels in an int64 array
  visibility = np.where(inside, 2, 1)
  if crop.flipped:
    points[:, 0] = width - points[:, 0] - 1
    points, visibility = points[flip_order], visibility[flip_order]

  grid_w, grid_h = output_size
  grid_points = _affine_points(points, to_grid)
  box = np.clip([grid_points[:, 0].min(), grid_points[:, 1].min(), grid_points[:, 0].max(),
                 grid_points[:, 1].max()], 0, [grid_w - 1, grid_h - 1, grid_w - 1, grid_h - 1])
  box_h, box_w = box[3] - box[1], box[2] - box[0]

  center_pixel = np.array(cuboid[0], dtype=np.float64)
  center_inside = 0 <= center_pixel[0] < width and 0 <= center_pixel[1] < height
  if not center_inside and visibility.sum() <= 12:  # centre outside and >= 4 corners outside: dropped
    return
  if not ((box_h > 0 and box_w > 0) or crop.rot_deg != 0):
    return
  radius = max(0, int(gaussian_radius(math.ceil(box_h), math.ceil(box_w))))
  if center_3d:
    if crop.flipped:
      center_pixel[0] = width - center_pixel[0] - 1
    center = _affine_points(center_pixel[None], to_grid)[0]
    center_int = center.astype(np.int32)
    if not (0 <= center_int[0] < grid_w and 0 <= center_int[1] < grid_h):
      return
  else:
    center = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], dtype=np.float32)
    center_int = center.astype(np.int32)

  if obj_scale:
    maps["scale"][s, k] = _object_scale(obj["scale"], use_absolute_scale)
  maps["wh"][s, k] = box_w, box_h
  maps["ind"][s, k] = center_int[1] * grid_w + center_int[0]
  maps["reg"][s, k] = center - center_int
  maps["reg_mask"][s, k] = 1

  grid_int = grid_points.astype(np.int64)  # the second truncation, on the grid
  num_joints = len(grid_int)
  labelled = (visibility > 1) & np.all((grid_int >= 0) & (grid_int < [grid_w, grid_h]), axis=1)
  slots = k * num_joints + np.arange(num_joints)
  maps["hps"][s, k] = np.where(labelled[:, None], grid_int - center_int, 0).reshape(-1)
  maps["hps_mask"][s, k] = np.repeat(labelled, 2)
  maps["hp_ind"][s, slots] = np.where(labelled, grid_int[:, 1] * grid_w + grid_int[:, 0], 0)
  maps["hp_mask"][s, slots] = labelled  # hp_offset stays 0: the points are already integers
  for j in np.flatnonzero(labelled):
    draw_gaussian(joint_heatmaps[j], grid_int[j], radius)
  draw_gaussian(heatmap, center_int, radius)
