"""`Detection`s for the evaluator's tests and benchmark: from TAO's evaluator predictions (the reference
fixtures) and from ground-truth labels (an oracle that predicts every labelled object exactly)."""

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.inference import detection as detection_lib
from centerpose_jax.inference.detection import Detection


def from_tao_prediction(prediction, index=0) -> Detection:
  """A TAO evaluator prediction {`projected_points` [9, 2] px, `point_3d_cam` [9, 3] (Objectron OpenGL frame,
  relative scale), `obj_scale` [3], `score`} as a `Detection` named "object_<index>".

  `keypoints_2d` are the projected corners and `bbox` their bounds; the pose's `location` is the cuboid's centre
  and its rotation the one that best maps a cuboid of size `obj_scale` onto `point_3d_cam`.
  """
  projected = np.asarray(prediction["projected_points"], dtype=np.float64).reshape(9, 2)
  points_3d = np.asarray(prediction["point_3d_cam"], dtype=np.float64).reshape(9, 3)
  scale = np.asarray(prediction["obj_scale"], dtype=np.float64).reshape(3)
  rotation, _ = geometry.fit_cuboid_pose(points_3d, scale)
  pose = detection_lib.Pose(location=points_3d[0], quaternion_xyzw=geometry.matrix_to_quaternion(rotation),
                            projected_keypoints_2d=projected, keypoints_3d=points_3d,
                            frame=detection_lib.OBJECTRON_OPENGL)
  return Detection(id=f"object_{index}", score=float(prediction["score"]),
                   bbox=np.concatenate([projected[1:].min(axis=0), projected[1:].max(axis=0)]),
                   keypoints_2d=projected[1:], relative_scale=scale, pose=pose)


def from_tao_predictions(predictions) -> list:
  """`from_tao_prediction` of each prediction of one frame."""
  return [from_tao_prediction(prediction, index) for index, prediction in enumerate(predictions)]


def from_label(obj, score=0.9, index=0) -> Detection:
  """A labelled object (CenterPose JSON: `projected_cuboid`, `keypoints_3d`, `scale` in metres) as a
  relative-scale detection (as PnP gives them: the box divided by its height `scale[1]`) with `score`."""
  height = obj["scale"][1]
  return from_tao_prediction({"projected_points": obj["projected_cuboid"],
                              "point_3d_cam": np.asarray(obj["keypoints_3d"], dtype=np.float64) / height,
                              "obj_scale": np.asarray(obj["scale"], dtype=np.float64) / height, "score": score},
                             index)
