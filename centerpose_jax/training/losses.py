"""CenterPose training loss (TAO's `ObjectPoseLoss`), per sample and per symmetric copy.

Every head loss is computed for each sample b and each symmetric ground-truth copy s, giving [B, S]. The
weighted sum over heads picks, per sample, the copy with the lowest total (copies whose objects all have
`ind` == 0 are invalid and never picked unless every copy is; then copy 0, as `torch.argmin` over +inf).
The chosen copy's losses are averaged over the batch, weighted by `sample_weight` (0 for padding samples).
Gradients reach the network through the chosen copy only.

Heads are the model's raw NHWC maps (logits for `hm` and `hm_hp`) on the output grid [B, h, w, C]; targets
follow the data loader's layout with the copy axis after the batch axis (see `compute_loss`).
"""

from typing import Dict, Mapping, Tuple

import jax
import jax.numpy as jnp

# TAO clamps the heatmap sigmoids to [EPS, 1 - EPS] before the focal loss.
HEATMAP_EPS = 1e-4
# Denominator guard of the masked L1 losses (TAO).
L1_EPS = 1e-4

# The seven head losses in logging order, with the loss_config weight and on/off flag of each (TAO's names).
# `None` as flag: always on. `reg` and `hp_offset` share `off_weight`, as TAO.
LOSS_TERMS = (
    ("hm", "hm_weight", None),
    ("wh", "wh_weight", "reg_bbox"),
    ("reg", "off_weight", "reg_offset"),
    ("hps", "hp_weight", None),
    ("hm_hp", "hm_hp_weight", "hm_hp"),
    ("hp_offset", "off_weight", "reg_hp_offset"),
    ("scale", "obj_scale_weight", "obj_scale"),
)


def loss_weights(loss_config, dataset_config=None) -> Dict[str, float]:
  """{head: weight} from `train.loss_config`; a head whose flag is off (or weight 0) gets weight 0.

  TAO has two copies of the flags: `train.loss_config.<flag>` switches the loss term and `dataset.<flag>`
  whether the loader produces its target (TAO crashes when the loss wants a target the loader left out). Here
  a term is used when both copies are on; pass `dataset_config` (`config.dataset`) to honour the second.
  """
  weights = {}
  for head, weight_name, flag_name in LOSS_TERMS:
    enabled = flag_name is None or bool(loss_config[flag_name])
    if flag_name is not None and dataset_config is not None:
      enabled = enabled and bool(dataset_config[flag_name])
    weights[head] = float(loss_config[weight_name]) if enabled else 0.0
  return weights


def focal_loss(logits: jax.Array, target: jax.Array) -> jax.Array:
  """CornerNet focal loss per sample and copy, normalised by that sample/copy's number of peaks.

  Args:
    logits: [B, h, w, C] raw heatmap logits (shared by every copy).
    target: [B, S, h, w, C] Gaussian heatmaps in [0, 1], exactly 1 at object peaks.

  Returns:
    [B, S] float32: -(sum pos + sum neg) / num_pos, or -sum neg when the copy has no peak.
  """
  pred = jnp.clip(jax.nn.sigmoid(logits.astype(jnp.float32)), HEATMAP_EPS, 1.0 - HEATMAP_EPS)[:, None]
  positive = (target == 1.0).astype(jnp.float32)
  negative = (target < 1.0).astype(jnp.float32)
  positive_term = jnp.log(pred) * jnp.square(1.0 - pred) * positive
  negative_term = jnp.log(1.0 - pred) * jnp.square(pred) * jnp.power(1.0 - target, 4) * negative
  axes = (2, 3, 4)
  num_positive = positive.sum(axes)
  positive_sum, negative_sum = positive_term.sum(axes), negative_term.sum(axes)
  return jnp.where(num_positive > 0, -(positive_sum + negative_sum) / jnp.maximum(num_positive, 1.0),
                   -negative_sum)


def gather_at(feature: jax.Array, index: jax.Array) -> jax.Array:
  """[B, S, N, C] values of feature [B, h, w, C] at flat output-grid indices [B, S, N] (y * w + x)."""
  batch, height, width, channels = feature.shape
  flat = feature.reshape(batch, 1, height * width, channels).astype(jnp.float32)
  return jnp.take_along_axis(flat, index[..., None].astype(jnp.int32), axis=2)


def masked_l1(pred: jax.Array, target: jax.Array, mask: jax.Array) -> jax.Array:
  """[B, S] mean absolute error over the masked elements: sum|t*m - p*m| / (sum m + 1e-4).

  Args:
    pred, target: [B, S, N, C].
    mask: [B, S, N, C] element mask, or [B, S, N] object mask (broadcast over C and counted per element).
  """
  if mask.ndim == pred.ndim - 1:
    mask = jnp.broadcast_to(mask[..., None], pred.shape)
  mask = mask.astype(jnp.float32)
  error = jnp.abs(target * mask - pred * mask).sum((2, 3))
  return error / (mask.sum((2, 3)) + L1_EPS)


def per_copy_losses(heads: Mapping[str, jax.Array], batch: Mapping[str, jax.Array]) -> Dict[str, jax.Array]:
  """{head: [B, S]} unweighted loss of each head, per sample and symmetric copy (see `compute_loss`)."""
  return {
      "hm": focal_loss(heads["hm"], batch["hm"]),
      "wh": masked_l1(gather_at(heads["wh"], batch["ind"]), batch["wh"], batch["reg_mask"]),
      "reg": masked_l1(gather_at(heads["reg"], batch["ind"]), batch["reg"], batch["reg_mask"]),
      "hps": masked_l1(gather_at(heads["hps"], batch["ind"]), batch["hps"], batch["hps_mask"]),
      "hm_hp": focal_loss(heads["hm_hp"], batch["hm_hp"]),
      "hp_offset": masked_l1(gather_at(heads["hp_offset"], batch["hp_ind"]), batch["hp_offset"],
                             batch["hp_mask"]),
      "scale": masked_l1(gather_at(heads["scale"], batch["ind"]), batch["scale"], batch["reg_mask"]),
  }


def compute_loss(heads: Mapping[str, jax.Array], batch: Mapping[str, jax.Array],
                 weights: Mapping[str, float]) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """The CenterPose loss of a batch, with the best symmetric copy chosen per sample.

  Args:
    heads: the model's outputs: `hm` [B, h, w, 1], `wh` [.., 2], `hps` [.., 16], `reg` [.., 2],
      `hm_hp` [.., 8], `hp_offset` [.., 2], `scale` [.., 3] (raw, any float dtype; computed in float32).
    batch: targets with a copy axis S: `hm` [B, S, h, w, 1], `hm_hp` [B, S, h, w, 8], `wh`/`reg` [B, S, M, 2],
      `scale` [B, S, M, 3], `hps` [B, S, M, 16], `hps_mask` [B, S, M, 16], `ind` int [B, S, M], `reg_mask`
      [B, S, M], `hp_offset` [B, S, M*8, 2], `hp_ind` int [B, S, M*8], `hp_mask` [B, S, M*8], and
      `sample_weight` [B] (optional; default all 1).
    weights: {head: weight}, e.g. `loss_weights(config.train.loss_config)`.

  Returns:
    (total, stats): the scalar weighted loss, and {"loss": total, "<head>_loss": the weighted batch mean of
    that head's unweighted loss at the chosen copies} for the seven heads of `LOSS_TERMS`.
  """
  losses = per_copy_losses(heads, batch)
  per_copy_total = sum(weights[name] * value for name, value in losses.items())  # [B, S]
  valid = batch["ind"].sum(axis=2) > 0  # [B, S]
  choice = jnp.argmin(jnp.where(valid, jax.lax.stop_gradient(per_copy_total), jnp.inf), axis=1)  # [B]

  sample_weight = batch.get("sample_weight")
  if sample_weight is None:
    sample_weight = jnp.ones(choice.shape, jnp.float32)
  sample_weight = sample_weight.astype(jnp.float32)
  normaliser = jnp.maximum(sample_weight.sum(), 1e-12)

  def batch_mean(per_copy):  # [B, S] -> weighted mean over B at the chosen copy
    chosen = jnp.take_along_axis(per_copy, choice[:, None], axis=1)[:, 0]
    return (chosen * sample_weight).sum() / normaliser

  stats = {f"{name}_loss": batch_mean(value) for name, value in losses.items()}
  total = sum(weights[name] * stats[f"{name}_loss"] for name in losses)
  stats["loss"] = total
  return total, stats
