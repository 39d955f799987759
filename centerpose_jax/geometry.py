"""The cuboid convention and camera frames: the one source of truth for data, inference and evaluation.

Cuboid points (Objectron order): index 0 is the centre, indices 1..8 are the corners with (x, y, z) signs
  1:(-,-,-) 2:(-,-,+) 3:(-,+,-) 4:(-,+,+) 5:(+,-,-) 6:(+,-,+) 7:(+,+,-) 8:(+,+,+)
of the half sizes, with object x = width, y = height ("up"), z = depth ("front"). The network predicts only
the 8 corners: network joint j is cuboid point j + 1.

Frames:
  * OpenCV camera frame: x right, y down, z forward; visible points have z > 0. Used by PnP and drawing.
  * Objectron "OpenGL" camera frame: ground-truth `location`, `quaternion_xyzw`, `keypoints_3d` and `AR_data`.
    Objectron frames are stored portrait, so the conversion is (x, y, z)_cv -> (y, x, -z)_gl (not
    diag(1, -1, -1)); visible points have z < 0. The 4x4 matrix is `OPENCV_TO_OPENGL`; it is its own inverse.
  * Pixels: OpenCV image coordinates, x = column (right), y = row (down), in the original image.
  * Output grid: the network's heatmap grid (input / 4, 128x128 at the default 512 input).

Quaternions are scipy order (x, y, z, w).

Rotation perturbations (the pose filter's error state): a rotation R is perturbed on the right,
R' = R @ so3_exp(delta), so `delta` [3] (radians) is expressed in the object's own frame. A right perturbation
does not depend on the camera frame: converting R between the OpenCV and OpenGL frames (a left product) leaves
it unchanged.
"""

import math

import numpy as np
from scipy.spatial.transform import Rotation

# [9, 3]: centre then the 8 corners of a unit cube centred at the origin, Objectron order.
UNIT_BOX = np.array(
    [[0.0, 0.0, 0.0],
     [-0.5, -0.5, -0.5], [-0.5, -0.5, 0.5], [-0.5, 0.5, -0.5], [-0.5, 0.5, 0.5],
     [0.5, -0.5, -0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5], [0.5, 0.5, 0.5]])

# The 12 edges as index pairs into the 9-point array (so corner indices 1..8), grouped by axis.
EDGES_X = ((1, 5), (2, 6), (3, 7), (4, 8))
EDGES_Y = ((1, 3), (5, 7), (2, 4), (6, 8))
EDGES_Z = ((1, 2), (3, 4), (5, 6), (7, 8))
EDGES = EDGES_X + EDGES_Y + EDGES_Z

# The 6 faces as 4 corner indices (into the 9-point array) ordered around the face.
FACES = (
    (5, 6, 8, 7),  # +x
    (1, 3, 4, 2),  # -x
    (3, 7, 8, 4),  # +y (top)
    (1, 2, 6, 5),  # -y
    (2, 4, 8, 6),  # +z (front)
    (1, 5, 7, 3),  # -z
)

# Horizontal-flip corner pairs, 1-based among the 8 corners (TAO's `dataset.flip_idx`): mirroring the image
# swaps the corners whose x sign differs.
FLIP_IDX = ((1, 5), (3, 7), (2, 6), (4, 8))

# (x, y, z)_cv -> (y, x, -z)_gl as a homogeneous 4x4; det = +1, and it is its own inverse.
OPENCV_TO_OPENGL = np.array(
    [[0.0, 1.0, 0.0, 0.0],
     [1.0, 0.0, 0.0, 0.0],
     [0.0, 0.0, -1.0, 0.0],
     [0.0, 0.0, 0.0, 1.0]])


def flip_permutation(flip_idx=FLIP_IDX, num_joints=8) -> np.ndarray:
  """[num_joints] int: the joint index each joint takes its value from after a horizontal flip.

  `flip_idx` holds 1-based corner pairs (TAO's format); the result is 0-based over the network's joints.
  """
  perm = np.arange(num_joints)
  for a, b in flip_idx:
    perm[a - 1], perm[b - 1] = b - 1, a - 1
  return perm


def cuboid_vertices(size) -> np.ndarray:
  """[9, 3] points of an axis-aligned cuboid of `size` (x, y, z) centred at the origin, Objectron order."""
  return UNIT_BOX * np.asarray(size, dtype=np.float64).reshape(1, 3)


def opencv_to_opengl(points) -> np.ndarray:
  """[..., 3] points from the OpenCV camera frame to the Objectron OpenGL frame: (x, y, z) -> (y, x, -z)."""
  points = np.asarray(points, dtype=np.float64)
  return np.stack([points[..., 1], points[..., 0], -points[..., 2]], axis=-1)


# The map is an involution, so the inverse is the same function.
opengl_to_opencv = opencv_to_opengl


def rotation_opencv_to_opengl(rotation_cv) -> np.ndarray:
  """[3, 3] rotation of an object->camera transform in the OpenCV frame, expressed in the OpenGL frame."""
  return OPENCV_TO_OPENGL[:3, :3] @ np.asarray(rotation_cv, dtype=np.float64)


# The frame change is an involution, so the inverse is the same function.
rotation_opengl_to_opencv = rotation_opencv_to_opengl


def quaternion_to_matrix(quaternion_xyzw) -> np.ndarray:
  """[3, 3] rotation matrix from a scipy-order (x, y, z, w) quaternion."""
  return Rotation.from_quat(np.asarray(quaternion_xyzw, dtype=np.float64)).as_matrix()


def matrix_to_quaternion(rotation) -> np.ndarray:
  """[4] scipy-order (x, y, z, w) quaternion of a [3, 3] rotation matrix."""
  return Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_quat()


def rotvec_to_quaternion(rotvec) -> np.ndarray:
  """[4] scipy-order (x, y, z, w) quaternion of a rotation vector [3] (axis * angle, radians).

  Gives (axis * sin(angle / 2), cos(angle / 2)), as pyrr's `from_axis_rotation` that TAO applies to OpenCV's
  rvec; much cheaper than scipy for a single rotation (PnP converts one per detection).
  """
  x, y, z = np.asarray(rotvec, dtype=np.float64).reshape(3).tolist()
  angle = math.sqrt(x * x + y * y + z * z)
  if angle == 0.0:
    return np.array([0.0, 0.0, 0.0, 1.0])
  factor = math.sin(angle / 2) / angle
  return np.array([x * factor, y * factor, z * factor, math.cos(angle / 2)])


def skew(vector) -> np.ndarray:
  """[3, 3] cross-product matrix [v]x of a vector [3]: skew(v) @ w = cross(v, w)."""
  x, y, z = np.asarray(vector, dtype=np.float64).reshape(3)
  return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def so3_exp(rotvec) -> np.ndarray:
  """[3, 3] rotation matrix of a rotation vector [3] (axis * angle, radians): Rodrigues' formula."""
  rotvec = np.asarray(rotvec, dtype=np.float64).reshape(3)
  angle = math.sqrt(float(rotvec @ rotvec))
  cross = skew(rotvec)
  if angle < 1e-8:  # second-order Taylor expansion
    return np.eye(3) + cross + 0.5 * cross @ cross
  return (np.eye(3) + math.sin(angle) / angle * cross
          + (1.0 - math.cos(angle)) / angle ** 2 * cross @ cross)


def so3_log(rotation) -> np.ndarray:
  """[3] rotation vector (axis * angle, angle in [0, pi] radians) of a [3, 3] rotation matrix.

  Inverse of `so3_exp`; exact near an angle of pi too (through the quaternion), where the axis's sign is
  arbitrary.
  """
  return Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_rotvec()


def so3_right_jacobian(rotvec) -> np.ndarray:
  """[3, 3] right Jacobian J_r of SO(3) at a rotation vector [3]: so3_exp(w + d) ~ so3_exp(w) so3_exp(J_r(w) d).

  J_r(w) = I - (1 - cos a) / a^2 [w]x + (a - sin a) / a^3 [w]x^2 with a = |w|.
  """
  rotvec = np.asarray(rotvec, dtype=np.float64).reshape(3)
  angle = math.sqrt(float(rotvec @ rotvec))
  cross = skew(rotvec)
  if angle < 1e-8:
    return np.eye(3) - 0.5 * cross + cross @ cross / 6.0
  return (np.eye(3) - (1.0 - math.cos(angle)) / angle ** 2 * cross
          + (angle - math.sin(angle)) / angle ** 3 * cross @ cross)


def rotation_angle(rotation_a, rotation_b) -> float:
  """The angle in radians, in [0, pi], of the rotation taking [3, 3] `rotation_a` to `rotation_b`."""
  relative = np.asarray(rotation_a, dtype=np.float64).T @ np.asarray(rotation_b, dtype=np.float64)
  return float(np.linalg.norm(so3_log(relative)))


def transform_from_pose(location, quaternion_xyzw) -> np.ndarray:
  """[4, 4] object->camera transform from a location [3] and a quaternion (x, y, z, w), same frame as both."""
  transform = np.eye(4)
  transform[:3, :3] = quaternion_to_matrix(quaternion_xyzw)
  transform[:3, 3] = np.asarray(location, dtype=np.float64)
  return transform


def rotation_about_y(theta) -> np.ndarray:
  """[4, 4] homogeneous rotation by `theta` radians about the object's y ("up") axis."""
  c, s = np.cos(theta), np.sin(theta)
  return np.array([[c, 0.0, s, 0.0], [0.0, 1.0, 0.0, 0.0], [-s, 0.0, c, 0.0], [0.0, 0.0, 0.0, 1.0]])


def apply_transform(transform, points) -> np.ndarray:
  """[N, 3] points mapped by a [4, 4] homogeneous transform."""
  points = np.asarray(points, dtype=np.float64)
  return points @ transform[:3, :3].T + transform[:3, 3]


def projection_to_ndc_uv(points_gl, projection_matrix) -> np.ndarray:
  """[N, 2] (u, v) in [0, 1] of OpenGL-frame points under the 4x4 Objectron projection matrix.

  u comes from NDC x and v from NDC y: clip = P [X, 1]; ndc = clip / clip_w; (u, v) = (ndc_xy + 1) / 2.
  Objectron frames are portrait, so u runs along image rows (y) and v along columns (x): see
  `project_with_projection_matrix`.
  """
  points = np.asarray(points_gl, dtype=np.float64)
  homogeneous = np.concatenate([points, np.ones_like(points[:, :1])], axis=1)
  clip = homogeneous @ np.asarray(projection_matrix, dtype=np.float64).T
  ndc = clip[:, :2] / clip[:, 3:4]
  return (ndc + 1.0) / 2.0


def project_with_projection_matrix(points_gl, projection_matrix, width, height) -> np.ndarray:
  """[N, 2] pixel (x, y) of OpenGL-frame points [N, 3] under the Objectron 4x4 projection matrix.

  The Objectron mapping swaps rows and columns: pixel x = v * width, pixel y = u * height, with (u, v) from
  `projection_to_ndc_uv`. Pass width = height = 1 for normalised image coordinates.
  """
  uv = projection_to_ndc_uv(points_gl, projection_matrix)
  return np.stack([uv[:, 1] * width, uv[:, 0] * height], axis=1)


def camera_matrix(fx, fy, cx, cy, skew=0.0) -> np.ndarray:
  """[3, 3] pinhole intrinsics K = [[fx, skew, cx], [0, fy, cy], [0, 0, 1]] in pixels."""
  return np.array([[fx, skew, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], dtype=np.float64)


def project_with_intrinsics(points_cv, camera_k) -> np.ndarray:
  """[N, 2] pixels of OpenCV-frame points [N, 3] under intrinsics K (no distortion)."""
  points = np.asarray(points_cv, dtype=np.float64)
  projected = points @ np.asarray(camera_k, dtype=np.float64).T
  return projected[:, :2] / projected[:, 2:3]


# Depth rows of the 4x4 projection matrix, as in Objectron labels (near plane ~0.5 mm, far plane at infinity).
OBJECTRON_DEPTH_ROW = (-0.9999997615814209, -0.0009999998146668077)


def projection_matrix_from_intrinsics(fx, fy, cx, cy, width, height) -> np.ndarray:
  """[4, 4] Objectron-convention projection matrix P (OpenGL frame) that matches pinhole intrinsics (pixels).

  With the row/column swap of `project_with_projection_matrix`, P-projecting the OpenGL-frame points gives the
  same pixels as K-projecting the OpenCV-frame points: P[0,0] = 2fy/H, P[0,2] = 1 - 2cy/H, P[1,1] = 2fx/W,
  P[1,2] = 1 - 2cx/W, P[3,2] = -1, and the depth row `OBJECTRON_DEPTH_ROW`.
  """
  projection = np.zeros((4, 4))
  projection[0, 0] = 2.0 * fy / height
  projection[0, 2] = 1.0 - 2.0 * cy / height
  projection[1, 1] = 2.0 * fx / width
  projection[1, 2] = 1.0 - 2.0 * cx / width
  projection[2, 2], projection[2, 3] = OBJECTRON_DEPTH_ROW
  projection[3, 2] = -1.0
  return projection


def intrinsics_from_projection_matrix(projection_matrix, width, height):
  """(fx, fy, cx, cy) in pixels of an image `width` x `height` from an Objectron 4x4 projection matrix.

  The inverse of `projection_matrix_from_intrinsics`: K-projecting OpenCV-frame points with these intrinsics
  gives the pixels that `project_with_projection_matrix` gives for the same points in the OpenGL frame.
  P only fixes normalised image coordinates, so the result holds for any image size (resized frames included).
  """
  projection = np.asarray(projection_matrix, dtype=np.float64)
  return (projection[1, 1] * width / 2.0, projection[0, 0] * height / 2.0,
          (1.0 - projection[1, 2]) * width / 2.0, (1.0 - projection[0, 2]) * height / 2.0)


def fit_cuboid_pose(keypoints, size):
  """(rotation [3, 3], translation [3]) that best map `cuboid_vertices(size)` onto `keypoints` [9, 3].

  Least squares over the 9 points with the size fixed (Kabsch), in whatever frame `keypoints` are; exact
  (up to rounding) when the keypoints are a cuboid of that size. The rotation is proper (det +1).
  """
  keypoints = np.asarray(keypoints, dtype=np.float64)
  centre = keypoints.mean(axis=0)  # the model's points are centred at the origin
  u, _, vt = np.linalg.svd((keypoints - centre).T @ cuboid_vertices(size))
  flip = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
  return u @ flip @ vt, centre
