"""Camera intrinsics for inference: from a JSON next to the image, else from the `inference` config.

The config's defaults are TAO's example camera (experiment_specs/infer.yaml: an Objectron 600x800 portrait
frame), so photos without labels run as they are; `principal_point_warning` says when that camera cannot be
the photos' one.
"""

import dataclasses
import json
import pathlib
from typing import Optional

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
CONFIG_SOURCE = "config"
# A principal point further than this fraction of the image size from the image centre (in x or y) is taken as
# a camera that does not belong to the image.
OFF_CENTRE_FRACTION = 0.25


class CameraError(errors.CenterPoseError, ValueError):
  """Intrinsics that cannot be used (zero, missing or unreadable); the message names the fields to set."""


@dataclasses.dataclass(frozen=True)
class Camera:
  """The intrinsics used for an image and where they came from.

  Attributes:
    matrix: [3, 3] K in pixels, [[fx, skew, cx], [0, fy, cy], [0, 0, 1]].
    source: CONFIG_SOURCE, or the path of the image's JSON label.
  """
  matrix: np.ndarray
  source: str

  def record(self) -> dict:
    """{fx, fy, cx, cy, skew (pixels), source} for the output JSON."""
    k = self.matrix
    return {"fx": float(k[0, 0]), "fy": float(k[1, 1]), "cx": float(k[0, 2]), "cy": float(k[1, 2]),
            "skew": float(k[0, 1]), "source": self.source}

  def describe(self) -> str:
    k = self.matrix
    where = "the config (inference.focal_length_x/y, principle_point_x/y, skew)" if (
        self.source == CONFIG_SOURCE) else self.source
    return f"fx {k[0, 0]:g}, fy {k[1, 1]:g}, cx {k[0, 2]:g}, cy {k[1, 2]:g}, skew {k[0, 1]:g} from {where}"


def camera_from_config(inference_config) -> Camera:
  """The camera of `principle_point_x/y`, `focal_length_x/y` and `skew` of the `inference` config section.

  Raises:
    CameraError: if any of the focal lengths or the principal point is 0, naming the fields to set.
  """
  values = {key: float(inference_config[field]) for key, field in _CONFIG_FIELDS.items()}
  missing = [field for key, field in _CONFIG_FIELDS.items() if values[key] == 0.0]
  if missing:
    fields = ", ".join(f"inference.{field}" for field in missing)
    raise CameraError(
        f"camera intrinsics are not set: {fields} {'is' if len(missing) == 1 else 'are'} 0. Set them to "
        f"the camera's intrinsics in pixels of the input images (--config.inference.{missing[0]}=...), "
        "put a JSON with camera_data.intrinsics {fx, fy, cx, cy} next to each image, or set "
        "inference.use_pnp=False (2D keypoints only, no intrinsics needed)")
  matrix = geometry.camera_matrix(values["fx"], values["fy"], values["cx"], values["cy"],
                                  float(inference_config["skew"]))
  return Camera(matrix, CONFIG_SOURCE)


def camera_for_image(image_path, inference_config) -> Camera:
  """The camera of one image (or video).

  A JSON with the image's stem next to it (`frame.png` -> `frame.json`) holding `camera_data.intrinsics`
  {fx, fy, cx, cy} wins over the config (skew 0, as TAO's validation); otherwise `camera_from_config`.

  Raises:
    CameraError: the JSON cannot be read or has `camera_data.intrinsics` with a missing or zero field, or
      there is no such JSON and the config's intrinsics are not set.
  """
  label_path = pathlib.Path(image_path).with_suffix(".json")
  intrinsics = None
  if label_path.is_file():
    try:
      with open(label_path, encoding="utf-8") as f:
        label = json.load(f)
    except (OSError, ValueError) as error:
      raise CameraError(f"{label_path}: cannot read the JSON next to the image ({error})") from None
    camera_data = label.get("camera_data") if isinstance(label, dict) else None
    intrinsics = camera_data.get("intrinsics") if isinstance(camera_data, dict) else None
  if intrinsics is None:
    return camera_from_config(inference_config)
  bad = [key for key in _CONFIG_FIELDS if not isinstance(intrinsics, dict) or not isinstance(
      intrinsics.get(key), (int, float)) or not intrinsics.get(key)]
  if bad:
    raise CameraError(f"{label_path}: camera_data.intrinsics: {', '.join(bad)} missing or 0")
  matrix = geometry.camera_matrix(*(float(intrinsics[key]) for key in ("fx", "fy", "cx", "cy")))
  return Camera(matrix, str(label_path))


def principal_point_warning(camera: Camera, width: int, height: int) -> Optional[str]:
  """A warning when a camera from the config has its principal point far from the centre of a `width` x
  `height` image (more than OFF_CENTRE_FRACTION of the size away in x or y), else None.

  Such a camera is not the image's (e.g. a 256-pixel demo camera on 600x800 photos): PnP poses would be
  skewed. Cameras from an image's own JSON are not checked.
  """
  if camera.source != CONFIG_SOURCE:
    return None
  cx, cy = camera.matrix[0, 2], camera.matrix[1, 2]
  if abs(cx - width / 2) <= OFF_CENTRE_FRACTION * width and abs(cy - height / 2) <= OFF_CENTRE_FRACTION * height:
    return None
  return (f"the configured camera's principal point ({cx:g}, {cy:g}) is far from the centre ({width / 2:g}, "
          f"{height / 2:g}) of the {width}x{height} input images: poses will be wrong. Set "
          "inference.principle_point_x, inference.principle_point_y, inference.focal_length_x and "
          "inference.focal_length_y to the camera that took them (pixels), or put a JSON with "
          "camera_data.intrinsics next to each image")
