"""Decoder parity with TAO's HeatmapDecoder (fixtures/tao_reference/decoder) and the intended heatmap rule."""

import functools

import jax
import numpy as np
import pytest
from scipy import ndimage

from centerpose_jax.inference import decode

NUM_SELECT = 100
THRESHOLD = 0.1


@pytest.fixture(scope="module")
def case(tao_reference):
  """(heads NHWC float32, TAO outputs) of decoder case 1."""
  arrays = np.load(tao_reference / "decoder" / "decoder_case1.npz")
  heads = {name[len("in_"):]: np.transpose(arrays[name].astype(np.float32), (0, 2, 3, 1))
           for name in arrays.files if name.startswith("in_")}
  expected = {name[len("out_"):]: arrays[name] for name in arrays.files if name.startswith("out_")}
  return heads, expected


@pytest.fixture(scope="module")
def decoded(case):
  heads, _ = case
  outputs = jax.jit(functools.partial(decode, num_select=NUM_SELECT))(heads)
  return {name: np.asarray(value) for name, value in outputs.items()}


@pytest.mark.parametrize("name", ["bboxes", "scores", "clses", "obj_scale", "kps_displacement_mean"])
def test_matches_tao(case, decoded, name):
  _, expected = case
  assert decoded[name].shape == expected[name].shape
  assert decoded[name].dtype == np.float32
  np.testing.assert_allclose(decoded[name], expected[name], rtol=0, atol=1e-5)


def test_refined_keypoints_match_tao(case, decoded):
  _, expected = case
  np.testing.assert_allclose(decoded["kps"], expected["kps"], rtol=0, atol=1e-4)
  snapped = decoded["kps"] != decoded["kps_displacement_mean"]
  expected_snapped = expected["kps"] != expected["kps_displacement_mean"]
  np.testing.assert_array_equal(snapped, expected_snapped)
  # Both branches occur (the fixture documents 31 and 21 snapped joints among the top 10).
  np.testing.assert_array_equal(expected_snapped[:, :10].sum(axis=(1, 2)) // 2, [31, 21])


def test_tao_compatible_heatmap_keypoints_are_all_missing(case):
  heads, expected = case
  outputs = jax.jit(functools.partial(decode, num_select=NUM_SELECT, tao_compatible_heatmap_kps=True))(heads)
  np.testing.assert_array_equal(np.asarray(outputs["kps_heatmap_mean"]), expected["kps_heatmap_mean"])


def _intended_heatmap_keypoints(heads, bboxes, scores, displacement):
  """numpy reference of the 7-condition heatmap keypoint rule, one detection and joint at a time."""
  hm_hp = 1.0 / (1.0 + np.exp(-heads["hm_hp"].astype(np.float64)))
  batch, height, width, num_joints = hm_hp.shape
  result = np.full((batch, NUM_SELECT, 2 * num_joints), -10000.0)
  for b in range(batch):
    for j in range(num_joints):
      channel = hm_hp[b, :, :, j]
      local_max = ndimage.maximum_filter(channel, size=3, mode="constant", cval=-np.inf)
      peaks = np.where(local_max == channel, channel, 0.0).ravel()
      top = np.argsort(-peaks, kind="stable")[:NUM_SELECT]
      rows, cols = np.divmod(top, width)
      peak_xy = np.stack([cols + heads["hp_offset"][b, rows, cols, 0],
                          rows + heads["hp_offset"][b, rows, cols, 1]], axis=1)
      peak_score = peaks[top]
      for k in range(NUM_SELECT):
        left, top_edge, right, bottom = bboxes[b, k]
        point = displacement[b, k, 2 * j:2 * j + 2]
        candidates = peak_score > THRESHOLD
        if not candidates.any():
          continue
        distances = np.linalg.norm(peak_xy[candidates] - point, axis=1)
        nearest = np.argmin(distances)
        x, y = peak_xy[candidates][nearest]
        size = max(bottom - top_edge, right - left)
        if (x > 0.8 * left and x < 1.2 * right and y > 0.8 * top_edge and y < 1.2 * bottom
            and peak_score[candidates][nearest] > THRESHOLD and distances[nearest] < 0.5 * size
            and scores[b, k, 0] > THRESHOLD):
          result[b, k, 2 * j:2 * j + 2] = (x, y)
  return result


def test_heatmap_keypoints_follow_the_intended_rule(case, decoded):
  heads, expected = case
  reference = _intended_heatmap_keypoints(heads, expected["bboxes"], expected["scores"],
                                          expected["kps_displacement_mean"])
  found = decoded["kps_heatmap_mean"]
  np.testing.assert_array_equal(found == -10000.0, reference == -10000.0)
  np.testing.assert_allclose(found, reference, rtol=0, atol=1e-4)
  # The rule is exercised: some keypoints pass and only confident detections (5 and 4 here) have any.
  valid_per_detection = (found != -10000.0).any(axis=2)
  assert valid_per_detection.sum() > 0
  assert not valid_per_detection[expected["scores"][..., 0] <= THRESHOLD].any()


def test_batch_items_decode_independently_on_a_non_square_grid():
  rng = np.random.default_rng(0)
  shapes = {"hm": 1, "wh": 2, "hps": 16, "reg": 2, "hm_hp": 8, "hp_offset": 2, "scale": 3}
  heads = {name: rng.normal(size=(3, 24, 40, channels)).astype(np.float32) for name, channels in shapes.items()}
  heads["hm"][1, 5, 30, 0] = 20.0  # the strongest peak of image 1, at row 5, column 30
  run = jax.jit(functools.partial(decode, num_select=20))
  batched = {name: np.asarray(value) for name, value in run(heads).items()}
  single = run({name: value[1:2] for name, value in heads.items()})
  for name in batched:
    np.testing.assert_allclose(batched[name][1:2], np.asarray(single[name]), rtol=0, atol=1e-6)
  assert batched["scores"].shape == (3, 20, 1)
  assert np.all(np.diff(batched["scores"][..., 0], axis=1) <= 0)
  # x comes from the column and y from the row of the peak.
  reg, wh, hps = heads["reg"][1, 5, 30], heads["wh"][1, 5, 30], heads["hps"][1, 5, 30]
  centre = np.array([30.0, 5.0]) + reg
  np.testing.assert_allclose(batched["bboxes"][1, 0], np.concatenate([centre - wh / 2, centre + wh / 2]),
                             atol=1e-5)
  np.testing.assert_allclose(batched["kps_displacement_mean"][1, 0], hps + np.tile([30.0, 5.0], 8), atol=1e-5)
  np.testing.assert_allclose(batched["obj_scale"][1, 0], heads["scale"][1, 5, 30], atol=1e-6)


def test_num_select_larger_than_the_grid_is_an_error():
  heads = {name: np.zeros((1, 4, 4, channels), np.float32)
           for name, channels in {"hm": 1, "wh": 2, "hps": 16, "reg": 2, "hm_hp": 8, "hp_offset": 2,
                                  "scale": 3}.items()}
  with pytest.raises(ValueError, match="num_select"):
    decode(heads, num_select=17)


def test_exports_to_onnx_with_a_dynamic_batch():
  import onnxruntime  # pylint: disable=g-import-not-at-top
  from jax2onnx import to_onnx  # pylint: disable=g-import-not-at-top
  names = ("hm", "wh", "hps", "reg", "hm_hp", "hp_offset", "scale")
  channels = (1, 2, 16, 2, 8, 2, 3)

  def decode_maps(*maps):
    return tuple(decode(dict(zip(names, maps)), num_select=10).values())

  model = to_onnx(decode_maps, [("B", 16, 24, c) for c in channels], opset=16, input_names=names)
  session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
  rng = np.random.default_rng(1)
  for batch in (1, 3):
    maps = [rng.normal(size=(batch, 16, 24, c)).astype(np.float32) for c in channels]
    maps[4][..., 2] += 3.0 * (rng.random((batch, 16, 24)) > 0.9)  # confident peaks for one joint
    expected = decode_maps(*maps)
    found = session.run(None, dict(zip(names, maps)))
    assert len(found) == 7
    assert (np.asarray(expected[-1]) != -10000.0).any()  # heatmap matching is exercised
    for value, reference in zip(found, expected):
      np.testing.assert_allclose(value, np.asarray(reference), rtol=0, atol=1e-5)
