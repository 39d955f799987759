"""Tests for the TAO checkpoint converter (convert/pytorch.py) and tools/convert_checkpoint.py."""

import json

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from centerpose_jax.convert import pytorch
from centerpose_jax.models import CenterPose
from centerpose_jax.testing import weight_rule
from tools import convert_checkpoint


@pytest.fixture(scope="module")
def dla34_keys(tao_reference):
  return weight_rule.read_keys(tao_reference / "networks" / "keys_DLA34.tsv")


@pytest.fixture(scope="module")
def dla34_state_dict(tao_reference):
  return weight_rule.make_state_dict(tao_reference / "networks" / "keys_DLA34.tsv")


@pytest.fixture(scope="module")
def dla34_variables(dla34_state_dict):
  return pytorch.from_tao_state_dict(dla34_state_dict, "DLA34")


def _assert_trees_equal(a, b):
  flat_a, flat_b = traverse_util.flatten_dict(a), traverse_util.flatten_dict(b)
  assert flat_a.keys() == flat_b.keys()
  for path, value in flat_a.items():
    np.testing.assert_array_equal(value, flat_b[path], err_msg="/".join(path))


def test_every_tao_key_is_converted_or_allow_listed(dla34_state_dict):
  conversion = pytorch.convert_state_dict(dla34_state_dict, "DLA34")
  assert set(conversion.used_keys) | set(conversion.unused_keys) == set(dla34_state_dict)
  assert len(conversion.used_keys) == 340
  # 55 BatchNorm step counters and the two dead projections (conv + BatchNorm with its counter).
  assert len(conversion.unused_keys) == 55 + 2 * 5
  params = conversion.variables["params"]
  np.testing.assert_array_equal(params["base"]["level2"]["root"]["conv"]["kernel"],
                                dla34_state_dict["base.level2.root.conv.weight"].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(params["ida_up"]["up_2"]["kernel"][:, :, 0, 5],  # no flip
                                dla34_state_dict["ida_up.up_2.weight"][5, 0])
  np.testing.assert_array_equal(params["hm"]["1"]["scale"], dla34_state_dict["hm.1.weight"])
  node_stats = conversion.variables["batch_stats"]["dla_up"]["ida_0"]["node_1"]["actf"]["0"]
  np.testing.assert_array_equal(node_stats["var"], dla34_state_dict["dla_up.ida_0.node_1.actf.0.running_var"])


def test_round_trip_is_exact_and_gives_tao_keys(dla34_keys, dla34_state_dict, dla34_variables):
  state_dict = pytorch.to_tao_state_dict(dla34_variables)
  assert {key: (value.shape, str(value.dtype)) for key, value in state_dict.items()} == {
      key: (shape, dtype) for key, shape, dtype in dla34_keys}
  for key, value in dla34_state_dict.items():
    if not pytorch.is_unused_tao_key(key):
      np.testing.assert_array_equal(state_dict[key], value, err_msg=key)
  _assert_trees_equal(pytorch.from_tao_state_dict(state_dict, "DLA34"), dla34_variables)
  lightning = pytorch.to_tao_state_dict(dla34_variables, prefix="model.")
  assert set(lightning) == {"model." + key for key in state_dict}


def test_wrapper_prefixes_are_stripped(dla34_state_dict, dla34_variables):
  wrapped = {"module.model." + key: value for key, value in dla34_state_dict.items()}
  _assert_trees_equal(pytorch.from_tao_state_dict({"state_dict": wrapped}, "DLA34"), dla34_variables)


def test_unknown_keys_are_listed(dla34_state_dict):
  state_dict = dict(dla34_state_dict, **{"base.fc.weight": np.zeros((1000, 512, 1, 1), np.float32),
                                         "hm.4.bias": np.zeros(1, np.float32)})
  with pytest.raises(pytorch.ConversionError) as error:
    pytorch.from_tao_state_dict(state_dict, "DLA34")
  assert error.value.unknown == ["base.fc.weight", "hm.4.bias"]
  assert not error.value.missing and "base.fc.weight" in str(error.value)


def test_missing_keys_are_listed(dla34_state_dict):
  state_dict = {key: value for key, value in dla34_state_dict.items()
                if not key.startswith("convGRU.cell0.Wh")}
  with pytest.raises(pytorch.ConversionError) as error:
    pytorch.from_tao_state_dict(state_dict, "DLA34")
  assert sorted(error.value.missing) == [f"convGRU.cell0.Wh{gate}.weight" for gate in "nrz"]
  assert not error.value.unknown and "3 missing keys" in str(error.value)


def test_misshaped_keys_are_listed(dla34_state_dict):
  state_dict = dict(dla34_state_dict)
  state_dict["wh.3.weight"] = np.zeros((2, 256), np.float32)  # a Linear-shaped weight where a 1x1 conv is
  state_dict["base.level5.root.bn.running_var"] = np.ones(256, np.float32)
  with pytest.raises(pytorch.ConversionError) as error:
    pytorch.from_tao_state_dict(state_dict, "DLA34")
  assert error.value.misshaped == [
      "base.level5.root.bn.running_var: got [256], expected [512]",
      "wh.3.weight: got [2, 256], expected [2, 256, 1, 1]"]


def test_all_problems_are_reported_together(dla34_state_dict):
  state_dict = {key: value for key, value in dla34_state_dict.items() if key != "reg.3.bias"}
  state_dict["scale.3.bias"] = np.zeros(4, np.float32)
  state_dict["base.level6.root.conv.weight"] = np.zeros((1, 1, 1, 1), np.float32)
  with pytest.raises(pytorch.ConversionError) as error:
    pytorch.from_tao_state_dict(state_dict, "DLA34")
  assert (error.value.unknown, error.value.missing, error.value.misshaped) == (
      ["base.level6.root.conv.weight"], ["reg.3.bias"], ["scale.3.bias: got [4], expected [3]"])
  message = str(error.value)
  assert "1 unknown keys" in message and "1 missing keys" in message and "1 wrongly shaped keys" in message


def test_encrypted_checkpoint_asks_for_tao_decryption():
  checkpoint = {"state_dict": b"\x00encrypted", "state_dict_encrypted": "eff", "epoch": 3}
  with pytest.raises(pytorch.EncryptedCheckpointError, match="decrypted by TAO"):
    pytorch.from_tao_state_dict(checkpoint, "DLA34")
  with pytest.raises(pytorch.EncryptedCheckpointError, match="decrypted by TAO"):
    pytorch.from_tao_state_dict(b"\x00encrypted", "DLA34")


def test_reading_a_pth_file(tmp_path):
  """With torch: a Lightning checkpoint's state_dict comes back as numpy. Without: a message naming the .npz
  route."""
  path = tmp_path / "model.pth"
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    path.write_bytes(b"not read")
    with pytest.raises(ImportError, match="np.savez"):
      pytorch.read_state_dict(path)
    return
  torch.save({"epoch": 1, "state_dict": {"model.hm.3.bias": torch.full((1,), -2.19)}}, path)
  np.testing.assert_array_equal(pytorch.read_state_dict(path)["model.hm.3.bias"], np.float32([-2.19]))


def test_tool_converts_an_npz_state_dict(tmp_path, dla34_state_dict, dla34_variables):
  source = tmp_path / "model.npz"
  np.savez(source, **{"model." + key: value for key, value in dla34_state_dict.items()})
  out = tmp_path / "converted"
  assert convert_checkpoint.main(["--checkpoint", str(source), "--arch", "DLA34", "--out", str(out)]) == 0
  summary = json.loads((out / "conversion.json").read_text())
  assert (summary["arch"], summary["keys_in_file"], summary["keys_converted"], summary["keys_unused"]) == (
      "DLA34", 405, 340, 65)
  assert summary["parameters"] == 19_840_786 - 41_728
  restored = ocp.StandardCheckpointer().restore(out / "variables")
  _assert_trees_equal(restored, dla34_variables)
  # A second run refuses to overwrite; a bad file fails with the listed keys, not a traceback.
  assert convert_checkpoint.main(["--checkpoint", str(source), "--arch", "DLA34", "--out", str(out)]) == 2
  assert convert_checkpoint.main(["--checkpoint", str(source), "--arch", "fan_small", "--out",
                                  str(tmp_path / "fan")]) == 2


def test_imagenet_dla34_loads_into_the_backbone_only(tmp_path, dla34_state_dict, dla34_variables):
  # timm / ucbdrive dla34 layout: backbone keys without `base.`, a classifier, no dead projections.
  dead = ("base.level3.project", "base.level4.project")
  imagenet = {key[len("base."):]: value * 2 for key, value in dla34_state_dict.items()
              if key.startswith("base.") and not key.startswith(dead)}
  imagenet["fc.weight"] = np.zeros((1000, 512, 1, 1), np.float32)
  imagenet["fc.bias"] = np.zeros(1000, np.float32)
  path = tmp_path / "dla34.npz"
  np.savez(path, **imagenet)
  loaded = pytorch.load_pretrained_backbone(dla34_variables, path, "DLA34")
  counters = [key for key in imagenet if key.endswith("num_batches_tracked")]
  assert sorted(loaded.unused_keys) == sorted(["fc.weight", "fc.bias"] + counters)
  assert len(loaded.used_keys) == len(imagenet) - len(loaded.unused_keys) and not loaded.not_loaded
  np.testing.assert_array_equal(loaded.variables["params"]["base"]["level1"]["0"]["kernel"],
                                2 * dla34_variables["params"]["base"]["level1"]["0"]["kernel"])
  np.testing.assert_array_equal(loaded.variables["batch_stats"]["base"]["level5"]["root"]["bn"]["mean"],
                                2 * dla34_variables["batch_stats"]["base"]["level5"]["root"]["bn"]["mean"])
  outside = lambda v: {k: t for k, t in v["params"].items() if k != "base"}
  _assert_trees_equal(outside(loaded.variables), outside(dla34_variables))

  with pytest.raises(FileNotFoundError, match="dla34-ba72cf86.pth"):
    pytorch.load_pretrained_backbone(dla34_variables, tmp_path / "absent.pth", "DLA34")
  np.savez(tmp_path / "other.npz", **{"encoder.weight": np.zeros(3, np.float32)})
  with pytest.raises(pytorch.ConversionError, match="no key"):
    pytorch.load_pretrained_backbone(dla34_variables, tmp_path / "other.npz", "DLA34")


def test_fan_classification_file_rules(tmp_path):
  """FAN files: `backbone.`/`module.` prefixes, fused class-attention qkv, `pos_embeder.`, ema and head
  keys."""
  dim = 4
  variables = {"params": {"base": {
      "cls_attn_blocks": {"0": {"attn": {name: {"kernel": np.zeros((dim, dim), np.float32),
                                                "bias": np.zeros(dim, np.float32)} for name in "qkv"}}},
      "pos_embed": {"token_projection": {"kernel": np.zeros((1, 1, 64, dim), np.float32)}},
      "out_norm0": {"scale": np.ones(dim, np.float32)}}}}
  qkv = np.arange(3 * dim * dim, dtype=np.float32).reshape(3 * dim, dim)
  projection = np.ones((dim, 64, 1, 1), np.float32)
  np.savez(tmp_path / "fan.npz", **{
      "module.backbone.cls_attn_blocks.0.attn.qkv.weight": qkv,
      "module.backbone.cls_attn_blocks.0.attn.qkv.bias": np.arange(3 * dim, dtype=np.float32),
      "backbone.pos_embeder.token_projection.weight": projection,
      "head.weight": np.zeros((1000, dim), np.float32),
      "ema_backbone.cls_token": np.zeros((1, 1, dim), np.float32)})
  loaded = pytorch.load_pretrained_backbone(variables, tmp_path / "fan.npz", "fan_small")
  attn = loaded.variables["params"]["base"]["cls_attn_blocks"]["0"]["attn"]
  for i, name in enumerate("qkv"):
    np.testing.assert_array_equal(attn[name]["kernel"], qkv[i * dim:(i + 1) * dim].T)
    np.testing.assert_array_equal(attn[name]["bias"], np.arange(i * dim, (i + 1) * dim))
  np.testing.assert_array_equal(loaded.variables["params"]["base"]["pos_embed"]["token_projection"]["kernel"],
                                projection.transpose(2, 3, 1, 0))
  assert loaded.unused_keys == ["head.weight"] and loaded.not_loaded == ["out_norm0.weight"]
  assert len(loaded.used_keys) == 7


def test_fan_state_dict_round_trip(tao_reference):
  """The generic rules cover FAN's leaves: Linear weights transposed, layer scales and temperature as
  stored."""
  keys = weight_rule.read_keys(tao_reference / "networks" / "keys_fan_small.tsv")
  state_dict = {key: weight_rule.make_tensor(key, shape) for key, shape, _ in keys}
  variables = pytorch.from_tao_state_dict(state_dict, "fan_small")
  block = variables["params"]["base"]["blocks"]["3"]
  np.testing.assert_array_equal(block["attn"]["kv"]["kernel"], state_dict["base.blocks.3.attn.kv.weight"].T)
  np.testing.assert_array_equal(block["mlp"]["temperature"], state_dict["base.blocks.3.mlp.temperature"])
  np.testing.assert_array_equal(block["gamma1"], state_dict["base.blocks.3.gamma1"])
  back = pytorch.to_tao_state_dict(variables)
  assert {key: value.shape for key, value in back.items()} == {key: shape for key, shape, _ in keys}
  for key, value in state_dict.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_converter_follows_the_model_options():
  """The key plan comes from the model: a DLA34 without ConvGRU has no convGRU keys and heads end in "2"."""
  plan = pytorch.tao_key_plan(pytorch.model_variable_shapes(CenterPose(use_convGRU=False)))
  assert "hps.2.weight" in plan and not any(key.startswith("convGRU") for key in plan)
  assert plan["hps.2.weight"].torch_shape == (16, 256, 1, 1)
  assert plan["ida_up.up_2.weight"].torch_shape == (64, 1, 8, 8)
