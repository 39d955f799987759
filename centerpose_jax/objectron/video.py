"""Decoding chosen frames of an Objectron video (OpenCV's FFmpeg backend) in the annotations' orientation."""

import pathlib
from typing import Iterable, Iterator, Tuple

import cv2
import numpy as np

from centerpose_jax import errors


class VideoError(errors.CenterPoseError, ValueError):
  """A video that is missing, unreadable, of the wrong size or shorter than its annotation."""


def read_frames(path, frame_indices: Iterable[int], num_frames: int, size) -> Iterator[Tuple[int, np.ndarray]]:
  """Yields (index, BGR uint8 image [height, width, 3]) for each of `frame_indices`, in increasing order.

  Frames are decoded in order from the start (video frame n is annotation frame n). OpenCV applies the file's
  rotation tag; a frame that still comes out landscape is turned 90 degrees clockwise, the turn that maps
  ARKit's landscape sensor image onto Objectron's portrait frames.

  Args:
    path: the video file.
    frame_indices: frames to return (0-based).
    num_frames: frames the annotation has; the video must have at least as many.
    size: (width, height) of the portrait frames the annotation describes.

  Raises:
    VideoError: missing or unreadable file, frames of another size, or fewer frames than `num_frames` (raised
      when the end is reached, after the frames before it were yielded).
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise VideoError(f"{path}: missing video")
  capture = cv2.VideoCapture(str(path))
  try:
    if not capture.isOpened():
      raise VideoError(f"{path}: cannot open the video")
    wanted = set(int(index) for index in frame_indices)
    for index in range(num_frames):
      if not capture.grab():
        raise VideoError(f"{path}: frame count mismatch: the video ends after {index} frames, the annotation "
                         f"has {num_frames}")
      if index not in wanted:
        continue
      ok, image = capture.retrieve()
      if not ok or image is None:
        raise VideoError(f"{path}: cannot decode frame {index}")
      yield index, _portrait(image, size, path)
  finally:
    capture.release()


def _portrait(image, size, path) -> np.ndarray:
  width, height = size
  if image.shape[:2] == (height, width):
    return image
  if image.shape[:2] == (width, height):
    return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
  raise VideoError(f"{path}: frames are {image.shape[1]}x{image.shape[0]}, the annotation's camera image is "
                   f"{width}x{height}")
