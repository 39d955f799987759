"""Camera intrinsics from the config and from a JSON next to the image."""

import json
import shutil

import numpy as np
import pytest

from centerpose_jax.inference import camera_for_image
from centerpose_jax.inference import camera_from_config
from configs import default


def _inference_config(**intrinsics):
  config = default.get_config().inference
  for name, value in intrinsics.items():
    config[name] = value
  return config


_SET = dict(principle_point_x=300.77, principle_point_y=392.88, focal_length_x=615.05, focal_length_y=616.0,
            skew=0.5)


def test_camera_from_config():
  np.testing.assert_array_equal(camera_from_config(_inference_config(**_SET)),
                                [[615.05, 0.5, 300.77], [0.0, 616.0, 392.88], [0.0, 0.0, 1.0]])


def test_unset_intrinsics_name_the_fields():
  with pytest.raises(ValueError) as error:
    camera_from_config(_inference_config())
  for field in ("focal_length_x", "focal_length_y", "principle_point_x", "principle_point_y"):
    assert f"inference.{field}" in str(error.value)
  with pytest.raises(ValueError, match=r"inference\.focal_length_y is 0") as error:
    camera_from_config(_inference_config(**{**_SET, "focal_length_y": 0.0}))
  assert "focal_length_x" not in str(error.value)


def test_json_next_to_the_image_overrides_the_config(tmp_path, real_fixtures):
  image = tmp_path / "chair_00000.png"
  shutil.copy(real_fixtures / "objectron_frames" / "chair_00000.png", image)
  with open(real_fixtures / "objectron_chair_label.json") as f:
    intrinsics = json.load(f)["camera_data"]["intrinsics"]
  shutil.copy(real_fixtures / "objectron_chair_label.json", tmp_path / "chair_00000.json")
  expected = [[intrinsics["fx"], 0.0, intrinsics["cx"]], [0.0, intrinsics["fy"], intrinsics["cy"]], [0, 0, 1]]
  np.testing.assert_allclose(camera_for_image(image, _inference_config(**_SET)), expected)
  # The JSON also works when the config has no intrinsics.
  np.testing.assert_allclose(camera_for_image(image, _inference_config()), expected)


def test_without_json_the_config_is_used(tmp_path):
  image = tmp_path / "frame.jpg"
  image.write_bytes(b"")
  np.testing.assert_array_equal(camera_for_image(image, _inference_config(**_SET)),
                                camera_from_config(_inference_config(**_SET)))
  (tmp_path / "frame.json").write_text(json.dumps({"objects": []}))  # a label without camera_data
  np.testing.assert_array_equal(camera_for_image(image, _inference_config(**_SET)),
                                camera_from_config(_inference_config(**_SET)))
  with pytest.raises(ValueError, match="principle_point_x"):
    camera_for_image(image, _inference_config())


def test_json_with_zero_intrinsics_is_an_error(tmp_path):
  image = tmp_path / "frame.png"
  (tmp_path / "frame.json").write_text(
      json.dumps({"camera_data": {"intrinsics": {"fx": 0.0, "fy": 600.0, "cx": 320.0, "cy": 240.0}}}))
  with pytest.raises(ValueError, match=r"frame\.json: camera_data\.intrinsics: fx"):
    camera_for_image(image, _inference_config(**_SET))
