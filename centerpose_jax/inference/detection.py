"""The detection record: one object found in one image, from post-processing through PnP, tracking, the
evaluator, the per-image JSON and drawing.

`postprocess.postprocess_detections` makes `Detection`s; `pnp.solve_pnp` gives the `Pose` they carry (None
without PnP); `tracking.Tracker` sets `track_id`; `evaluation.evaluator.Evaluator.add_frame` scores them;
`output.prediction_record` writes them as TAO's per-image JSON (the JSON keys are the field names below, a
pose's fields at the object's top level); `draw.draw_detections` draws them.

Units: image pixels are pixels of the original image (not the letterboxed input); relative-scale units are
those of the network's `relative_scale` (the cuboid's height is `relative_scale[1]`, about 1); metres when
`inference.object_height` gave the object's real height (`Pose.unit`).

Frames: a pose is in the OpenCV camera frame (x right, y down, z forward) or Objectron's OpenGL camera frame
((x, y, z)_gl = (y, x, -z)_cv); `Pose.frame` records which (`inference.opencv` / `evaluate.opencv` chose it).
"""

import dataclasses
from typing import Optional

import numpy as np

# `Pose.frame`: the camera frame of a pose. The strings are the per-image JSON's `pose_frame`.
OPENCV = "opencv"
OBJECTRON_OPENGL = "objectron_opengl"
FRAMES = (OPENCV, OBJECTRON_OPENGL)
# `Pose.unit`: the length unit of a pose. The strings are the per-image JSON's `pose_unit`.
RELATIVE = "relative"
METRE = "metre"
UNITS = (RELATIVE, METRE)


def frame_name(opencv: bool) -> str:
  """The `Pose.frame` of a config's `opencv` flag: OPENCV for True, OBJECTRON_OPENGL for False."""
  return OPENCV if opencv else OBJECTRON_OPENGL


@dataclasses.dataclass(frozen=True, eq=False)
class Pose:
  """The 6-DoF pose of a detected cuboid (`pnp.solve_pnp`, or a track's filtered pose).

  Attributes:
    location: [3] the cuboid's centre in the camera frame `frame`, in `unit`s.
    quaternion_xyzw: [4] the object -> camera rotation in `frame`, scipy (x, y, z, w) order.
    projected_keypoints_2d: [9, 2] image pixels of the centre and the 8 corners (Objectron order) under the
      pose (the same in either frame).
    keypoints_3d: [9, 3] the centre and the 8 corners in the camera frame `frame`, in `unit`s.
    frame: OPENCV or OBJECTRON_OPENGL, the camera frame of `location`, `quaternion_xyzw` and `keypoints_3d`.
    unit: RELATIVE (TAO's: the cuboid has the size `relative_scale`) or METRE (`inference.object_height`).
  """
  location: np.ndarray
  quaternion_xyzw: np.ndarray
  projected_keypoints_2d: np.ndarray
  keypoints_3d: np.ndarray
  frame: str
  unit: str = RELATIVE

  def __post_init__(self):
    if self.frame not in FRAMES:
      raise ValueError(f"Pose.frame must be one of {FRAMES}, got {self.frame!r}")
    if self.unit not in UNITS:
      raise ValueError(f"Pose.unit must be one of {UNITS}, got {self.unit!r}")

  @property
  def opencv(self) -> bool:
    """Whether the pose is in the OpenCV camera frame (else Objectron's OpenGL frame)."""
    return self.frame == OPENCV

  def in_metres(self, metres_per_unit: float) -> "Pose":
    """This relative-scale pose with `location` and `keypoints_3d` multiplied by `metres_per_unit` (projections
    are unchanged)."""
    return dataclasses.replace(self, location=self.location * metres_per_unit,
                               keypoints_3d=self.keypoints_3d * metres_per_unit, unit=METRE)


@dataclasses.dataclass(frozen=True, eq=False)
class Detection:
  """One detected object in one image.

  Attributes:
    id: "object_<n>", n counting the image's detections in soft-NMS order.
    score: the detection's score after soft-NMS decay, in [0, 1].
    bbox: [4] (x1, y1, x2, y2) image pixels, the 2D box.
    keypoints_2d: [8, 2] image pixels of the 8 regressed corners (the displacement keypoints, Objectron order;
      (-10000, -10000) for a missing one).
    relative_scale: [3] the cuboid's size (x width, y height, z depth) in relative-scale units (height ~1).
    pose: the 6-DoF pose (PnP, or a track's filtered one); None without PnP (`inference.use_pnp=False`).
    track_id: the track's number (1, 2, ... per video) when the detection belongs to a confirmed track
      (`tracking.Tracker`); None otherwise.
  """
  id: str
  score: float
  bbox: np.ndarray
  keypoints_2d: np.ndarray
  relative_scale: np.ndarray
  pose: Optional[Pose] = None
  track_id: Optional[int] = None
