"""Camera intrinsics for inference: from the `inference` config, or from a JSON next to the image."""

import json
import pathlib

import numpy as np

from centerpose_jax import errors
from centerpose_jax import geometry

# The config fields of the intrinsics, by the JSON `camera_data.intrinsics` key they correspond to.
_CONFIG_FIELDS = {
    "fx": "focal_length_x",
    "fy": "focal_length_y",
    "cx": "principle_point_x",
    "cy": "principle_point_y",
}


class CameraError(errors.CenterPoseError, ValueError):
  """Camera intrinsics that are unset (0) or missing, in the config or in a JSON next to an image."""


def camera_from_config(inference_config) -> np.ndarray:
  """[3, 3] intrinsics K (pixels) from `principle_point_x/y`, `focal_length_x/y` and `skew` of the config.

  Args:
    inference_config: the `inference` section of the config (or any mapping with those fields).

  Raises:
    CameraError: if any of the focal lengths or the principal point is 0 (the defaults), naming the
      fields to set.
  """
  values = {key: float(inference_config[field]) for key, field in _CONFIG_FIELDS.items()}
  missing = [field for key, field in _CONFIG_FIELDS.items() if values[key] == 0.0]
  if missing:
    fields = ", ".join(f"inference.{field}" for field in missing)
    raise CameraError(
        f"camera intrinsics are not set: {fields} {'is' if len(missing) == 1 else 'are'} 0. Set them to "
        f"the camera's intrinsics in pixels of the input images (--config.inference.{missing[0]}=...), "
        "or put a JSON with camera_data.intrinsics {fx, fy, cx, cy} next to each image")
  return geometry.camera_matrix(values["fx"], values["fy"], values["cx"], values["cy"],
                                float(inference_config["skew"]))


def camera_for_image(image_path, inference_config) -> np.ndarray:
  """[3, 3] intrinsics K (pixels) for one image.

  A JSON with the image's stem next to it (`frame.png` -> `frame.json`) holding
  `camera_data.intrinsics` {fx, fy, cx, cy} overrides the config's intrinsics (skew 0, as TAO's
  validation); otherwise `camera_from_config(inference_config)`.

  Raises:
    CameraError: if the JSON has `camera_data.intrinsics` with a missing or zero field, or if there is no
      such JSON and the config's intrinsics are not set.
  """
  label_path = pathlib.Path(image_path).with_suffix(".json")
  intrinsics = None
  if label_path.is_file():
    with open(label_path) as f:
      intrinsics = json.load(f).get("camera_data", {}).get("intrinsics")
  if intrinsics is None:
    return camera_from_config(inference_config)
  bad = [key for key in _CONFIG_FIELDS if not intrinsics.get(key)]
  if bad:
    raise CameraError(f"{label_path}: camera_data.intrinsics: {', '.join(bad)} missing or 0")
  return geometry.camera_matrix(*(float(intrinsics[key]) for key in ("fx", "fy", "cx", "cy")))
