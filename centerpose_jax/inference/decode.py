"""Decoding of the raw head maps into the top-K detections (TAO's HeatmapDecoder), in pure JAX.

This is also the body of the exported ONNX graph, so it uses only ops jax2onnx exports: `lax.top_k`,
`jnp.take_along_axis`, `lax.reduce_window` max (through `nn.max_pool` with keyword windows), elementwise
arithmetic and reductions. Integer `//` and `%` on tensors with a symbolic batch axis do not export
(jax2onnx's Mod lowering needs static shapes), so the row, column and class of a flat top-K index are read
from constant lookup tables instead; nothing reshapes by the batch size.

Every output is in output-grid units (pixels of the head maps, input / down_ratio), x = column, y = row.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# TAO's fixed score threshold for heatmap keypoint peaks and detection centres in the decoder.
KEYPOINT_THRESHOLD = 0.1
# Placeholder coordinate of a missing keypoint (TAO's convention; post-processing passes it through).
MISSING = -10000.0


def peak_nms(heat: jax.Array) -> jax.Array:
  """[B, h, w, C] heat with every value that is not the maximum of its 3x3 neighbourhood set to 0.

  The window is padded with -inf, as PyTorch's `max_pool2d(kernel 3, stride 1, padding 1)`.
  """
  neighbourhood_max = nn.max_pool(heat, window_shape=(3, 3), strides=(1, 1), padding="SAME")
  return jnp.where(neighbourhood_max == heat, heat, jnp.zeros_like(heat))


def _grid_position(flat_index: jax.Array, height: int, width: int, channels: int):
  """(row, column, channel) int32 arrays of flat indices (y * w + x) * C + c into an [h, w, C] map.

  Looked up in constant tables rather than computed with `//` and `%` (see the module docstring).
  """
  row, column, channel = np.unravel_index(np.arange(height * width * channels), (height, width, channels))
  return tuple(jnp.take(jnp.asarray(table, dtype=jnp.int32), flat_index, axis=0)
               for table in (row, column, channel))


def _gather_pixels(feature: jax.Array, flat_pixel: jax.Array) -> jax.Array:
  """[B, N, C] values of feature [B, h, w, C] at flat pixel indices [B, N] (y * w + x)."""
  batch, height, width, channels = feature.shape
  batch_flat = feature.reshape(batch, height * width, channels)
  return jnp.take_along_axis(batch_flat, flat_pixel[..., None], axis=1)


def _interleave_xy(x: jax.Array, y: jax.Array) -> jax.Array:
  """[..., 2J] (x0, y0, x1, y1, ...) from x and y of shape [..., J]."""
  return jnp.stack([x, y], axis=-1).reshape(*x.shape[:-1], 2 * x.shape[-1])


def _check_num_select(num_select: int, height: int, width: int) -> None:
  if num_select > height * width:
    raise ValueError(f"num_select={num_select} exceeds the {height}x{width} output grid's "
                     f"{height * width} pixels; lower inference.num_select or use a larger input")


def _keypoint_peaks(hm_hp_logits, hp_offset, num_select):
  """Top `num_select` peaks per joint channel of the keypoint heatmaps.

  Args:
    hm_hp_logits: [B, h, w, J] raw keypoint heatmap logits.
    hp_offset: [B, h, w, 2] sub-pixel offset (x, y) of keypoint peaks, output-grid pixels.
    num_select: peaks kept per joint (K).

  Returns:
    (peak_xy [B, J, K, 2], peak_score [B, J, K]): peaks at integer pixel + offset, in output-grid pixels;
    peaks whose sigmoid score is at most KEYPOINT_THRESHOLD get coordinates MISSING and score -1.
  """
  batch, height, width, num_joints = hm_hp_logits.shape
  heat = peak_nms(jax.nn.sigmoid(hm_hp_logits))
  per_joint = jnp.moveaxis(heat, -1, 1).reshape(batch, num_joints, height * width)
  score, flat_pixel = jax.lax.top_k(per_joint, num_select)  # [B, J, K]
  offset = _gather_pixels(hp_offset, flat_pixel.reshape(batch, num_joints * num_select))
  offset = offset.reshape(batch, num_joints, num_select, 2)
  rows, columns, _ = _grid_position(flat_pixel, height, width, 1)
  x = columns.astype(jnp.float32) + offset[..., 0]
  y = rows.astype(jnp.float32) + offset[..., 1]
  confident = score > KEYPOINT_THRESHOLD
  peak_xy = jnp.where(confident[..., None], jnp.stack([x, y], axis=-1), MISSING)
  peak_score = jnp.where(confident, score, -1.0)
  return peak_xy, peak_score


def decode(heads: dict, num_select: int = 100, tao_compatible_heatmap_kps: bool = False) -> dict:
  """Top-K detections from the raw head maps.

  Steps (reference-behavior §5.1): sigmoid; 3x3 max-pool NMS; top-K over all pixels and classes; gathers at
  the peaks; keypoint-heatmap matching.

  Args:
    heads: NHWC float maps as the model returns them, raw logits: `hm` [B, h, w, C] (C classes), `wh`
      [B, h, w, 2], `hps` [B, h, w, 2J], `reg` [B, h, w, 2], `hm_hp` [B, h, w, J], `hp_offset` [B, h, w, 2],
      `scale` [B, h, w, 3]. Any h, w; J = 8 for the cuboid corners. Computed in float32 whatever the
      maps' dtype (coordinates up to the grid size need float32 precision).
    num_select: K, the number of detections (and of keypoint peaks per joint) kept.
    tao_compatible_heatmap_kps: if True, `kps_heatmap_mean` is all MISSING, which is what TAO's decoder
      outputs (its 7-condition test adds booleans, a logical OR in current PyTorch, then compares with 7).

  Returns:
    dict of float32 arrays in output-grid pixels:
      `bboxes` [B, K, 4] (x1, y1, x2, y2) around the peak + `reg`, size `wh`;
      `scores` [B, K, 1] NMS'd centre heat, descending; `clses` [B, K, 1] class index;
      `kps` [B, K, 2J] displacement keypoints, each replaced by the nearest heatmap peak when that peak is
        inside the box, its score is at least 0.1 and it lies within 0.3 * max(box w, h);
      `obj_scale` [B, K, 3] the raw relative-scale regression (x, y, z);
      `kps_displacement_mean` [B, K, 2J] integer peak pixel + `hps` (no `reg`, as in training);
      `kps_heatmap_mean` [B, K, 2J] the nearest heatmap peak where all of x > 0.8 left, x < 1.2 right,
        y > 0.8 top, y < 1.2 bottom, peak score > 0.1, distance < 0.5 * max(box w, h) and centre score > 0.1
        hold, else MISSING.
    Keypoints are interleaved (x0, y0, x1, y1, ...).
  """
  heads = {name: jnp.asarray(value, dtype=jnp.float32) for name, value in heads.items()}
  hm = heads["hm"]
  batch, height, width, num_classes = hm.shape
  _check_num_select(num_select, height, width)

  # [B, h*w*C], flat index (y * w + x) * C + c.
  heat = peak_nms(jax.nn.sigmoid(hm)).reshape(batch, height * width * num_classes)
  scores, flat_index = jax.lax.top_k(heat, num_select)  # [B, K]
  rows, columns, classes = _grid_position(flat_index, height, width, num_classes)
  flat_pixel = rows * width + columns
  classes = classes.astype(jnp.float32)
  xs_int = columns.astype(jnp.float32)
  ys_int = rows.astype(jnp.float32)

  hps = _gather_pixels(heads["hps"], flat_pixel)  # [B, K, 2J]
  num_joints = hps.shape[-1] // 2
  hps = hps.reshape(batch, num_select, num_joints, 2)
  displacement_xy = hps + jnp.stack([xs_int, ys_int], axis=-1)[:, :, None, :]  # [B, K, J, 2]

  reg = _gather_pixels(heads["reg"], flat_pixel)
  wh = _gather_pixels(heads["wh"], flat_pixel)
  xs = xs_int + reg[..., 0]
  ys = ys_int + reg[..., 1]
  left, right = xs - wh[..., 0] / 2, xs + wh[..., 0] / 2
  top, bottom = ys - wh[..., 1] / 2, ys + wh[..., 1] / 2
  bboxes = jnp.stack([left, top, right, bottom], axis=-1)

  peak_xy, peak_score = _keypoint_peaks(heads["hm_hp"], heads["hp_offset"], num_select)
  # Distance of every detection's displacement keypoint to every peak of the same joint: [B, J, K, K].
  regressed = jnp.moveaxis(displacement_xy, 2, 1)  # [B, J, K, 2]
  distance = jnp.sqrt(jnp.sum((regressed[:, :, :, None, :] - peak_xy[:, :, None, :, :]) ** 2, axis=-1))
  nearest = jnp.argmin(distance, axis=-1)  # [B, J, K]
  min_distance = jnp.min(distance, axis=-1)
  nearest_score = jnp.take_along_axis(peak_score, nearest, axis=-1)
  nearest_xy = jnp.take_along_axis(peak_xy, nearest[..., None], axis=2)  # [B, J, K, 2]
  # Back to detection-major [B, K, J].
  nearest_x, nearest_y = jnp.moveaxis(nearest_xy[..., 0], 1, 2), jnp.moveaxis(nearest_xy[..., 1], 1, 2)
  nearest_score = jnp.moveaxis(nearest_score, 1, 2)
  min_distance = jnp.moveaxis(min_distance, 1, 2)

  # Box edges and size as [B, K, 1], broadcast over joints.
  left_j, right_j, top_j, bottom_j = (v[..., None] for v in (left, right, top, bottom))
  box_size = jnp.maximum(bottom_j - top_j, right_j - left_j)
  regression_kept = ((nearest_x < left_j) | (nearest_x > right_j) | (nearest_y < top_j)
                     | (nearest_y > bottom_j) | (nearest_score < KEYPOINT_THRESHOLD)
                     | (min_distance > 0.3 * box_size))
  refined_x = jnp.where(regression_kept, displacement_xy[..., 0], nearest_x)
  refined_y = jnp.where(regression_kept, displacement_xy[..., 1], nearest_y)

  if tao_compatible_heatmap_kps:
    heatmap_kps = jnp.full_like(refined_x, MISSING)
    heatmap_kps = _interleave_xy(heatmap_kps, heatmap_kps)
  else:
    heatmap_valid = ((nearest_x > 0.8 * left_j) & (nearest_x < 1.2 * right_j)
                     & (nearest_y > 0.8 * top_j) & (nearest_y < 1.2 * bottom_j)
                     & (nearest_score > KEYPOINT_THRESHOLD) & (min_distance < 0.5 * box_size)
                     & (scores[..., None] > KEYPOINT_THRESHOLD))
    heatmap_kps = _interleave_xy(jnp.where(heatmap_valid, nearest_x, MISSING),
                                 jnp.where(heatmap_valid, nearest_y, MISSING))

  obj_scale = _gather_pixels(heads["scale"], flat_pixel)
  return {
      "bboxes": bboxes,
      "scores": scores[..., None],
      "kps": _interleave_xy(refined_x, refined_y),
      "clses": classes[..., None],
      "obj_scale": obj_scale,
      "kps_displacement_mean": displacement_xy.reshape(batch, num_select, 2 * num_joints),
      "kps_heatmap_mean": heatmap_kps,
  }
