"""Camera intrinsics from the config and from a JSON next to the image."""

import json
import shutil

import numpy as np
import pytest

from centerpose_jax.inference import camera as camera_lib
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
_UNSET = dict(principle_point_x=0.0, principle_point_y=0.0, focal_length_x=0.0, focal_length_y=0.0)


def test_camera_from_config():
  camera = camera_from_config(_inference_config(**_SET))
  np.testing.assert_array_equal(camera.matrix, [[615.05, 0.5, 300.77], [0.0, 616.0, 392.88], [0.0, 0.0, 1.0]])
  assert camera.source == "config"
  assert camera.record() == {"fx": 615.05, "fy": 616.0, "cx": 300.77, "cy": 392.88, "skew": 0.5, "source": "config"}


def test_the_default_camera_is_taos_example_camera():
  """Photos without labels run with the defaults: TAO's infer.yaml camera (an Objectron 600x800 frame)."""
  camera = camera_from_config(_inference_config())
  np.testing.assert_allclose(camera.matrix, [[615.0476582845052, 0.0, 300.77100118001306],
                                             [0.0, 615.0476582845052, 392.8848775227865], [0.0, 0.0, 1.0]])
  assert camera_lib.principal_point_warning(camera, 600, 800) is None


def test_unset_intrinsics_name_the_fields():
  with pytest.raises(camera_lib.CameraError) as error:
    camera_from_config(_inference_config(**_UNSET))
  for field in ("focal_length_x", "focal_length_y", "principle_point_x", "principle_point_y"):
    assert f"inference.{field}" in str(error.value)
  assert "use_pnp=False" in str(error.value)
  with pytest.raises(camera_lib.CameraError, match=r"inference\.focal_length_y is 0") as error:
    camera_from_config(_inference_config(**{**_SET, "focal_length_y": 0.0}))
  assert "focal_length_x" not in str(error.value)


def test_json_next_to_the_image_overrides_the_config(tmp_path, real_fixtures):
  image = tmp_path / "chair_00000.png"
  shutil.copy(real_fixtures / "objectron_frames" / "chair_00000.png", image)
  with open(real_fixtures / "objectron_chair_label.json") as f:
    intrinsics = json.load(f)["camera_data"]["intrinsics"]
  shutil.copy(real_fixtures / "objectron_chair_label.json", tmp_path / "chair_00000.json")
  expected = [[intrinsics["fx"], 0.0, intrinsics["cx"]], [0.0, intrinsics["fy"], intrinsics["cy"]], [0, 0, 1]]
  camera = camera_for_image(image, _inference_config(**_SET))
  np.testing.assert_allclose(camera.matrix, expected)
  assert camera.source == str(tmp_path / "chair_00000.json")
  # The JSON also works when the config has no intrinsics, and is never warned about.
  np.testing.assert_allclose(camera_for_image(image, _inference_config(**_UNSET)).matrix, expected)
  assert camera_lib.principal_point_warning(camera, 6000, 8000) is None


def test_without_json_the_config_is_used(tmp_path):
  image = tmp_path / "frame.jpg"
  image.write_bytes(b"")
  expected = camera_from_config(_inference_config(**_SET))
  np.testing.assert_array_equal(camera_for_image(image, _inference_config(**_SET)).matrix, expected.matrix)
  (tmp_path / "frame.json").write_text(json.dumps({"objects": []}))  # a label without camera_data
  assert camera_for_image(image, _inference_config(**_SET)).source == "config"
  with pytest.raises(camera_lib.CameraError, match="principle_point_x"):
    camera_for_image(image, _inference_config(**_UNSET))
  (tmp_path / "frame.json").write_text("{broken")
  with pytest.raises(camera_lib.CameraError, match=r"frame\.json: cannot read"):
    camera_for_image(image, _inference_config(**_SET))


def test_json_with_zero_intrinsics_is_an_error(tmp_path):
  image = tmp_path / "frame.png"
  (tmp_path / "frame.json").write_text(
      json.dumps({"camera_data": {"intrinsics": {"fx": 0.0, "fy": 600.0, "cx": 320.0, "cy": 240.0}}}))
  with pytest.raises(camera_lib.CameraError, match=r"frame\.json: camera_data\.intrinsics: fx"):
    camera_for_image(image, _inference_config(**_SET))


def test_an_off_centre_principal_point_is_warned_about_naming_the_fields():
  # The demo's camera (a 256-pixel image: cx = cy = 128) on 600x800 photos.
  demo = camera_from_config(_inference_config(principle_point_x=128.0, principle_point_y=128.0,
                                              focal_length_x=300.0, focal_length_y=300.0))
  warning = camera_lib.principal_point_warning(demo, 600, 800)
  assert "(128, 128)" in warning and "(300, 400)" in warning and "600x800" in warning
  for field in ("principle_point_x", "principle_point_y", "focal_length_x", "focal_length_y"):
    assert f"inference.{field}" in warning
  assert camera_lib.principal_point_warning(demo, 256, 256) is None
