"""Issue 15, item 5: weights that do not fit the configured model give one message naming the checkpoint's
architecture (recorded in its meta, or read off the weights) and the configured one."""

import jax
import numpy as np
import pytest
from configs import default

from centerpose_jax.tasks.export import run as run_export
from centerpose_jax.inference.predictor import create_predictor
from centerpose_jax.models import architecture
from centerpose_jax.models import create_model
from helpers import save_checkpoint


def _config(model_type="DLA34", width=0.125):
  config = default.get_config()
  config.model.backbone.model_type = model_type
  config.model.backbone.width_multiplier = width
  config.model.head_conv = 32
  return config


@pytest.fixture(scope="module")
def dla34_checkpoint(tmp_path_factory):
  """A converted-checkpoint folder holding a slim DLA34 (width 0.125, head_conv 32): no meta."""
  shapes = architecture.expected_shapes(create_model(_config()))
  variables = jax.tree_util.tree_map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)
  return save_checkpoint(tmp_path_factory.mktemp("dla34") / "checkpoint", variables)


def test_dla34_weights_under_a_fan_small_config_name_both(dla34_checkpoint, tmp_path):
  config = _config("fan_small", 1.0)
  config.evaluate.checkpoint = str(dla34_checkpoint)
  with pytest.raises(architecture.ArchitectureMismatchError) as raised:
    create_predictor(config, "evaluate")
  first, *details = str(raised.value).splitlines()
  assert first == (f"{dla34_checkpoint}: the checkpoint holds a DLA34 (width_multiplier 0.125, head_conv 32), the "
                   "config asks for fan_small (width_multiplier 1, head_conv 32); set "
                   "--config.model.backbone.model_type=DLA34 --config.model.backbone.width_multiplier=0.125")
  assert len(details) == 6 and details[-1].startswith("  ... ") and details[0].startswith("  missing ['params']['base']")
  config = _config("DLA34", 0.25)  # the export path says the same, before anything is traced
  config.export.checkpoint = str(dla34_checkpoint)
  config.export.onnx_file = str(tmp_path / "model.onnx")
  with pytest.raises(architecture.ArchitectureMismatchError, match=r"the checkpoint holds a DLA34 \(width_multiplier "
                     r"0.125, head_conv 32\), the config asks for DLA34 \(width_multiplier 0.25, head_conv 32\); set "
                     r"--config.model.backbone.width_multiplier=0.125\n  \[.params.\]\[.base.\]\[.base_layer.\]\[.0.\]\[.kernel.\]: shape \(7, 7, 3, 2\), the model needs \(7, 7, 3, 4\)\n"):
    run_export(config)
  assert not (tmp_path / "model.onnx").exists()


def test_the_architecture_is_read_off_the_weights():
  for model_type, width in (("DLA34", 0.25), ("fan_small", 1.0)):
    shapes = architecture.expected_shapes(create_model(_config(model_type, width)))
    found = architecture.infer_architecture(shapes)
    assert found == ({"model_type": "DLA34", "width_multiplier": 0.25, "head_conv": 32} if model_type == "DLA34"
                     else {"model_type": "fan_small", "head_conv": 32})
