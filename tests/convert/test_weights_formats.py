"""Every `checkpoint` option reads a TAO Lightning .pth, a plain state_dict .pth, an .npz or our Orbax folder
(`checkpoint.load_variables`, format detected from the content, converted on the fly without torch)."""

import numpy as np
import pytest
from flax import traverse_util

from centerpose_jax.convert import pth_reader
from centerpose_jax.convert import pytorch
from centerpose_jax.models import create_model
from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax.testing.variables import random_variables
from configs import default
from helpers import save_checkpoint

torch = pytest.importorskip("torch", reason="torch writes the .pth files read here (requirements-dev.txt)")


def _model(head_conv=16):
  config = default.get_config()
  config.model.backbone.width_multiplier = 0.25
  config.model.head_conv = head_conv
  return create_model(config)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  """(model, variables, {format name: path}) of one set of weights stored in every format."""
  folder = tmp_path_factory.mktemp("weights")
  model = _model()
  variables = random_variables(model, (64, 64), seed=3)
  state_dict = pytorch.to_tao_state_dict(variables)
  paths = {"orbax": save_checkpoint(folder / "orbax", variables), "npz": folder / "model.npz",
           "plain_pth": folder / "state_dict.pth", "lightning_pth": folder / "model_epoch_039_step_01234.pth"}
  np.savez(paths["npz"], **state_dict)
  torch.save({key: torch.from_numpy(value) for key, value in state_dict.items()}, paths["plain_pth"])
  torch.save({"epoch": 39, "global_step": 1234, "pytorch-lightning_version": "2.1.0",
              "state_dict": {f"model.{key}": torch.from_numpy(value) for key, value in state_dict.items()},
              "optimizer_states": [{"state": {}, "param_groups": [{"lr": 6e-5, "params": [0]}]}],
              "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.1)}}}, paths["lightning_pth"])
  return model, variables, paths


@pytest.mark.parametrize("name", ["orbax", "npz", "plain_pth", "lightning_pth"])
def test_every_format_loads_the_same_variables(weights, name):
  model, variables, paths = weights
  expected_format = {"orbax": checkpoint_lib.ORBAX, "npz": checkpoint_lib.NPZ}.get(name, checkpoint_lib.PYTORCH)
  assert checkpoint_lib.weights_format(paths[name]) == expected_format
  loaded = checkpoint_lib.load_variables(paths[name], model=model)
  flat, want = traverse_util.flatten_dict(loaded), traverse_util.flatten_dict(variables)
  assert flat.keys() == want.keys()
  for key, value in want.items():
    np.testing.assert_array_equal(flat[key], value, err_msg="/".join(key))


def test_a_state_dict_of_another_model_names_the_settings(weights):
  _, _, paths = weights
  with pytest.raises(pytorch.ConversionError, match=r"model\.backbone\.model_type=DLA34, model\.head_conv=32"
                     ) as error:
    checkpoint_lib.load_variables(paths["lightning_pth"], model=_model(head_conv=32))
  message = str(error.value)
  assert str(paths["lightning_pth"]) in message and f"{len(error.value.misshaped)} wrongly shaped keys" in message
  assert f"... and {len(error.value.misshaped) - 20} more" in message  # one readable message, not 400 lines


def test_orbax_weights_read_as_a_tao_state_dict_for_the_backbone(weights):
  model, variables, paths = weights
  from_orbax = checkpoint_lib.load_state_dict(paths["orbax"])
  from_pth = checkpoint_lib.load_state_dict(paths["plain_pth"])
  assert from_orbax.keys() == from_pth.keys()
  fresh = random_variables(model, (64, 64), seed=11)
  loaded = pytorch.load_pretrained_backbone(fresh, from_orbax, "DLA34")
  np.testing.assert_array_equal(loaded.variables["params"]["base"]["level5"]["root"]["conv"]["kernel"],
                                variables["params"]["base"]["level5"]["root"]["conv"]["kernel"])


def test_files_in_no_known_format_say_what_they_are(tmp_path):
  (tmp_path / "notes.txt").write_text("hello")
  with pytest.raises(pth_reader.PthError, match="not a PyTorch checkpoint"):
    checkpoint_lib.weights_format(tmp_path / "notes.txt")
  with pytest.raises(pytorch.WeightsFileError, match="no checkpoint folder or weights file"):
    checkpoint_lib.weights_format(tmp_path / "absent.pth")
