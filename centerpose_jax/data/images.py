"""Decoding dataset images, and what makes an image unusable for training or evaluation.

`image_problems` is what the dataset validator (`annotations.validate_source`) and training's check before
step 0 report per image, as `path: field: what is wrong` lines:
  * `<image>: image: empty file (0 bytes)`
  * `<image>: image: cannot be decoded (damaged, truncated, or not a JPEG/PNG/BMP)` (OpenCV rejects a PNG
    or JPEG that ends early, even one missing only its end marker)
  * `<image>: image: WxH pixels, smaller than the network's stride (32 pixels)`
  * `<label>: camera_data.width/height: WxH, but the image <image> is wxh pixels (the pixel labels do not fit)`
"""

from typing import List, Optional, Tuple

import cv2
import numpy as np

# The backbone's deepest stride (input sizes are multiples of it): a smaller image holds less than one cell.
MIN_IMAGE_SIDE = 32


def decode_image(image_bytes) -> Optional[np.ndarray]:
  """uint8 BGR [H, W, 3] of an encoded image (as cv2.imread), or None when it cannot be decoded."""
  try:
    image = cv2.imdecode(np.frombuffer(image_bytes, dtype=np.uint8), cv2.IMREAD_COLOR)
  except cv2.error:
    return None
  return image if image is not None and image.size else None


def camera_size(annotation) -> Optional[Tuple[float, float]]:
  """(width, height) in pixels from a label's `camera_data`, or None when either is absent or not a number."""
  camera = annotation.get("camera_data") if isinstance(annotation, dict) else None
  if not isinstance(camera, dict):
    return None
  size = camera.get("width"), camera.get("height")
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in size):
    return size
  return None


def image_problems(image_bytes: bytes, annotation, image_path: str, json_path: Optional[str],
                   min_side: int = MIN_IMAGE_SIDE) -> Tuple[List[str], bool]:
  """(every problem of one sample's image (see the module docstring), whether it decodes at all).

  Args:
    image_bytes: the encoded image.
    annotation: its parsed label (or None); `camera_data.width/height`, when present, must be the image size.
    image_path, json_path: names for the messages (the label's for the size mismatch).
    min_side: smallest usable width and height in pixels.
  """
  if not image_bytes:
    return [f"{image_path}: image: empty file (0 bytes)"], False
  image = decode_image(image_bytes)
  if image is None:
    return [f"{image_path}: image: cannot be decoded (damaged, truncated, or not a JPEG/PNG/BMP)"], False
  problems = []
  height, width = image.shape[:2]
  if min(width, height) < min_side:
    problems.append(f"{image_path}: image: {width}x{height} pixels, smaller than the network's stride "
                    f"({min_side} pixels)")
  size = camera_size(annotation)
  if size is not None and (float(size[0]), float(size[1])) != (float(width), float(height)):
    problems.append(f"{json_path or image_path}: camera_data.width/height: {size[0]:g}x{size[1]:g}, but the "
                    f"image {image_path} is {width}x{height} pixels (the pixel labels do not fit)")
  return problems, True
