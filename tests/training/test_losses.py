"""The CenterPose loss against a plain numpy transcription of TAO's ObjectPoseLoss (spec §3)."""

import os

import jax
import numpy as np
import pytest
from configs import default

from centerpose_jax.training import losses
from standin import HEAD_CHANNELS
from standin import random_batch

WEIGHTS = {"hm": 1.0, "wh": 0.1, "reg": 1.0, "hps": 1.0, "hm_hp": 1.0, "hp_offset": 1.0, "scale": 1.0}


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x.astype(np.float64)))


def _numpy_focal(logits, target):
  """One sample/copy: logits [h, w, C], target [h, w, C]."""
  p = np.clip(_sigmoid(logits), 1e-4, 1 - 1e-4).ravel()
  g = target.astype(np.float64).ravel()
  peak = g == 1.0
  pos_sum = np.sum(np.log(p[peak]) * (1 - p[peak]) ** 2)
  neg_sum = np.sum(np.log(1 - p[~peak]) * p[~peak] ** 2 * (1 - g[~peak]) ** 4)
  num_pos = int(peak.sum())
  return -(pos_sum + neg_sum) / num_pos if num_pos else -neg_sum


def _numpy_l1(feature, index, target, mask):
  """One sample/copy: feature [h, w, C], index [N], target [N, C], mask [N] or [N, C]."""
  flat = feature.reshape(-1, feature.shape[-1]).astype(np.float64)
  total, count = 0.0, 0.0
  for n, i in enumerate(index):
    for c in range(flat.shape[1]):
      m = mask[n] if mask.ndim == 1 else mask[n, c]
      total += abs(target[n, c] * m - flat[i, c] * m)
      count += m
  return total / (count + 1e-4)


def _numpy_loss(heads, batch, weights):
  """TAO's loss, sample by sample and copy by copy; returns (total, {name: batch mean at the best copy})."""
  batch_size, symmetry = batch["ind"].shape[:2]
  per_copy = {name: np.zeros((batch_size, symmetry)) for name, _ in HEAD_CHANNELS}
  for b in range(batch_size):
    for s in range(symmetry):
      per_copy["hm"][b, s] = _numpy_focal(heads["hm"][b], batch["hm"][b, s])
      per_copy["hm_hp"][b, s] = _numpy_focal(heads["hm_hp"][b], batch["hm_hp"][b, s])
      for name, mask_name in (("wh", "reg_mask"), ("reg", "reg_mask"), ("scale", "reg_mask"),
                              ("hps", "hps_mask")):
        per_copy[name][b, s] = _numpy_l1(heads[name][b], batch["ind"][b, s], batch[name][b, s],
                                         batch[mask_name][b, s])
      per_copy["hp_offset"][b, s] = _numpy_l1(heads["hp_offset"][b], batch["hp_ind"][b, s],
                                              batch["hp_offset"][b, s], batch["hp_mask"][b, s])
  totals = sum(weights[name] * value for name, value in per_copy.items())
  chosen = []
  for b in range(batch_size):
    best, best_value = 0, np.inf
    for s in range(symmetry):
      value = totals[b, s] if batch["ind"][b, s].sum() > 0 else np.inf
      if value < best_value:
        best, best_value = s, value
    chosen.append(best)
  w = batch["sample_weight"].astype(np.float64)
  means = {name: sum(w[b] * per_copy[name][b, chosen[b]] for b in range(batch_size)) / w.sum()
           for name in per_copy}
  return sum(weights[name] * means[name] for name in means), means, chosen


def _random_heads(rng, batch, size):
  grid = size // 4
  return {name: rng.normal(scale=2.0, size=(batch, grid, grid, channels)).astype(np.float32)
          for name, channels in HEAD_CHANNELS}


@pytest.mark.parametrize("sample_weight", [(1.0, 1.0, 1.0, 1.0), (1.0, 0.5, 0.0, 2.0)])
def test_loss_matches_numpy_reference_with_symmetric_copies(sample_weight):
  rng = np.random.default_rng(0)
  # Sample 1 has an invalid copy; sample 3 has no valid copy at all (copy 0 is used).
  batch = random_batch(rng, batch=4, symmetry=3, size=32, invalid_copies=[(1, 0), (3, 0), (3, 1), (3, 2)])
  batch["sample_weight"] = np.asarray(sample_weight, np.float32)
  heads = _random_heads(rng, 4, 32)
  expected_total, expected, chosen = _numpy_loss(heads, batch, WEIGHTS)
  assert chosen[1] != 0 and any(c != 0 for c in (chosen[0], chosen[2]))  # not trivially copy 0

  total, stats = jax.jit(lambda h, b: losses.compute_loss(h, b, WEIGHTS))(heads, batch)
  np.testing.assert_allclose(float(total), expected_total, rtol=1e-5)
  np.testing.assert_allclose(float(stats["loss"]), expected_total, rtol=1e-5)
  for name in WEIGHTS:
    np.testing.assert_allclose(float(stats[f"{name}_loss"]), expected[name], rtol=1e-5, atol=1e-7)


def test_invalid_copy_is_never_chosen_even_with_lowest_loss():
  rng = np.random.default_rng(1)
  batch = random_batch(rng, batch=1, symmetry=2, size=16, invalid_copies=[(0, 1)])
  heads = _random_heads(rng, 1, 16)
  per_copy = jax.jit(losses.per_copy_losses)(heads, batch)
  total_per_copy = sum(WEIGHTS[n] * np.asarray(v) for n, v in per_copy.items())[0]
  # Copy 1 has no object, so its regression losses are 0 and it would win an unmasked argmin.
  assert total_per_copy[1] < total_per_copy[0]
  total, _ = jax.jit(lambda h, b: losses.compute_loss(h, b, WEIGHTS))(heads, batch)
  np.testing.assert_allclose(float(total), total_per_copy[0], rtol=1e-6)


def test_gradient_flows_only_through_the_chosen_copy():
  rng = np.random.default_rng(2)
  batch = random_batch(rng, batch=2, symmetry=3, size=16)
  heads = _random_heads(rng, 2, 16)
  _, _, chosen = _numpy_loss(heads, batch, WEIGHTS)
  grads = jax.jit(jax.grad(lambda h: losses.compute_loss(h, batch, WEIGHTS)[0]))(heads)
  only_chosen = {name: np.stack([value[b, chosen[b]] for b in range(2)])[:, None] for name, value in batch.items()
                 if name not in ("input", "sample_weight")}
  only_chosen["sample_weight"] = batch["sample_weight"]
  expected = jax.jit(jax.grad(lambda h: losses.compute_loss(h, only_chosen, WEIGHTS)[0]))(heads)
  for name in heads:
    np.testing.assert_allclose(np.asarray(grads[name]), np.asarray(expected[name]), rtol=1e-5, atol=1e-8)


def test_loss_on_tao_bottle_targets_with_12_copies(tao_reference):
  """TAO's own targets of a bottle (12 rotated copies) against the numpy reference."""
  targets = np.load(tao_reference / "targets" / "t06_synth_bottle_S12" / "targets.npz")
  names = ("hm", "hm_hp", "wh", "reg", "scale", "hps", "hps_mask", "ind", "reg_mask", "hp_offset", "hp_ind",
           "hp_mask")
  sample = {name: np.asarray(targets[name]) for name in names}
  for name in ("hm", "hm_hp"):  # [S, C, h, w] -> [S, h, w, C]
    sample[name] = sample[name].transpose(0, 2, 3, 1)
  batch = {name: np.stack([value, value]) for name, value in sample.items()}
  batch["sample_weight"] = np.ones(2, np.float32)
  assert batch["ind"].shape[1] == 12
  rng = np.random.default_rng(3)
  heads = _random_heads(rng, 2, 512)
  # Put a confident, well-regressed detection at copy 5's centre of sample 0 so that the choice is not copy 0.
  center = int(batch["ind"][0, 5, 0])
  heads["hm"][0].reshape(-1)[center] = 6.0
  for name in ("wh", "reg", "scale", "hps"):
    heads[name][0].reshape(-1, heads[name].shape[-1])[center] = batch[name][0, 5, 0]
  weights = losses.loss_weights(default.get_config().train.loss_config)
  assert weights == WEIGHTS
  expected_total, expected, chosen = _numpy_loss(heads, batch, weights)
  assert chosen[0] != 0  # the regressed copy (or one sharing its centre) beats copy 0
  total, stats = jax.jit(lambda h, b: losses.compute_loss(h, b, weights))(heads, batch)
  np.testing.assert_allclose(float(total), expected_total, rtol=1e-5)
  for name in weights:
    np.testing.assert_allclose(float(stats[f"{name}_loss"]), expected[name], rtol=1e-5, atol=1e-7)


def test_disabled_terms_get_zero_weight():
  config = default.get_config().train.loss_config
  config.reg_bbox = False
  config.hm_hp = False
  weights = losses.loss_weights(config)
  assert weights["wh"] == 0.0 and weights["hm_hp"] == 0.0
  assert weights["hm"] == 1.0 and weights["hp_offset"] == 1.0


def test_the_dataset_copies_of_the_flags_take_effect():
  """TAO's `dataset.<flag>` decides whether the target exists: a term is used only when both copies are on."""
  config = default.get_config()
  assert losses.loss_weights(config.train.loss_config, config.dataset) == WEIGHTS
  config.dataset.hm_hp = False
  config.dataset.reg_offset = False
  weights = losses.loss_weights(config.train.loss_config, config.dataset)
  assert weights["hm_hp"] == 0.0 and weights["reg"] == 0.0
  assert {name: w for name, w in weights.items() if name not in ("hm_hp", "reg")} == {
      name: w for name, w in WEIGHTS.items() if name not in ("hm_hp", "reg")}


def test_pytorch_loss_of_the_benchmark_equals_ours():
  """bench/versus_pytorch.py trains PyTorch with `tao_torch.centerpose_loss`: same value and head gradients."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
    from centerpose_jax.testing import tao_torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    if os.environ.get("CI", "").lower() == "true":
      raise
    pytest.skip("torch is not installed (pip install -r requirements-dev.txt)")
  rng = np.random.default_rng(4)
  batch = random_batch(rng, batch=3, symmetry=2, size=32, invalid_copies=[(1, 0), (2, 0), (2, 1)])
  batch["sample_weight"] = np.asarray((1.0, 0.5, 2.0), np.float32)
  heads = _random_heads(rng, 3, 32)
  total, grads = jax.value_and_grad(lambda h: losses.compute_loss(h, batch, WEIGHTS)[0])(heads)
  torch_heads = {name: torch.tensor(value.transpose(0, 3, 1, 2), requires_grad=True) for name, value in heads.items()}
  torch_total = tao_torch.centerpose_loss(torch_heads, {k: torch.from_numpy(v) for k, v in batch.items()}, WEIGHTS)
  torch_total.backward()
  np.testing.assert_allclose(torch_total.item(), float(total), rtol=1e-5)
  for name, value in torch_heads.items():
    np.testing.assert_allclose(value.grad.numpy().transpose(0, 2, 3, 1), np.asarray(grads[name]), rtol=1e-4,
                               atol=1e-7, err_msg=name)
