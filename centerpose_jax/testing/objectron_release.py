"""An Objectron-layout release built from the real bottle annotations, for the converter's tests and bench.

Source: ../shared/fixtures/real/objectron_bottle_sequence_labels.json (sequence bottle/batch-3/14: 119 frames
at 1440x1920, intrinsics fx = fy = 1473.27, cx = 720, cy = 960, and per frame the box's rotation, translation
and scale in the OpenCV camera frame plus 2D landmarks). Its own 3D is not a consistent rigid scene: the
per-frame sizes vary by about 0.1 m, the landmarks with their depths are not a box (no cuboid fits them), and
with the recorded translations the box reaches behind the camera in most frames. So the sequence written here
keeps the real camera intrinsics, image size, frame rate, frame count, box size (frame 0's) and the real
per-frame orientation of the box in the camera, places the camera 3 times farther (so every corner stays at
least 0.25 m in front of it), and derives everything else the way ARKit and Objectron record it:

  world            y up; the bottle stands on the plane y = 0, turned 0.3 rad about y
  camera.transform camera -> world, view_matrix its inverse (OpenGL camera frame: x, y, z = (y, x, -z)_cv)
  projection       `geometry.projection_matrix_from_intrinsics` of the portrait intrinsics
  intrinsics       the landscape sensor's K (1920 x 1440): fx_s = fy, fy_s = fx, cx_s = cy - 0.5,
                   cy_s = width - cx - 0.5 (pixel-centre convention), as ARKit reports it
  point_3d         view @ object_to_world @ (scale * unit box); point_2d its P-projection (x along the width,
                   y along the height), depth = -z; visibility: the fraction of the 8 corners inside the image
  plane            the ground (y = 0) under the bottle, in the camera frame

Video frames are synthetic: grey, the projected box drawn, and the frame index written as 10 black/white
blocks along the top edge (`frame_index_of` reads it back after any resize).
"""

import dataclasses
import json
import pathlib
from typing import List, Optional

import cv2
import numpy as np

from centerpose_jax import geometry
from centerpose_jax.objectron import tfrecord
from centerpose_jax.objectron.proto import a_r_capture_metadata_pb2
from centerpose_jax.objectron.proto import annotation_data_pb2
from centerpose_jax.objectron.proto import example_pb2
from centerpose_jax.objectron.proto import object_pb2

FIXTURE = "objectron_bottle_sequence_labels.json"
SEQUENCE_ID = "bottle/batch-3/14"
OBJECT_ID = 7  # not 0, so that matching annotations to objects by position would be caught
DISTANCE_FACTOR = 3.0
YAW = 0.3
MARKER_BITS = 10


@dataclasses.dataclass
class BottleScene:
  """The scene of `bottle_scene`.

  Attributes:
    width, height: portrait image size in pixels.
    fx, fy, cx, cy: portrait intrinsics (pixels).
    fps: frame rate.
    scale: [3] box size in metres.
    object_to_world: [4, 4].
    views: per frame [4, 4] world -> OpenGL camera.
    texture: optional BGR uint8 [height, width, 3] background of the frames (moved 7 px per frame), instead
      of plain grey (so that video and image coding cost what they cost on photographs).
  """
  width: int
  height: int
  fx: float
  fy: float
  cx: float
  cy: float
  fps: float
  scale: np.ndarray
  object_to_world: np.ndarray
  views: List[np.ndarray]
  texture: Optional[np.ndarray] = None

  @property
  def projection(self) -> np.ndarray:
    return geometry.projection_matrix_from_intrinsics(self.fx, self.fy, self.cx, self.cy, self.width, self.height)

  def sensor_intrinsics(self) -> np.ndarray:
    """[3, 3] the K ARKit records for the landscape sensor image (see the module docstring)."""
    return np.array([[self.fy, 0.0, self.cy - 0.5], [0.0, self.fx, self.width - self.cx - 0.5], [0.0, 0.0, 1.0]])

  def keypoints(self, index):
    """(point_3d [9, 3] OpenGL camera frame, point_2d [9, 2] normalised x, y) of frame `index`."""
    points = geometry.apply_transform(self.views[index] @ self.object_to_world, geometry.cuboid_vertices(self.scale))
    return points, geometry.project_with_projection_matrix(points, self.projection, 1.0, 1.0)

  def visibility(self, index) -> float:
    points, normalised = self.keypoints(index)
    inside = (points[1:, 2] < 0) & np.all((normalised[1:] >= 0) & (normalised[1:] <= 1), axis=1)
    return float(inside.mean())

  def plane(self, index):
    """(centre, normal) of the ground in the OpenGL camera frame of frame `index`."""
    view = self.views[index]
    return view[:3, 3].copy(), view[:3, :3] @ np.array([0.0, 1.0, 0.0])


def bottle_scene(real_fixtures, num_frames=None, downscale=1) -> BottleScene:
  """The scene of the module docstring: the first `num_frames` frames, image and intrinsics / `downscale`."""
  data = json.loads((pathlib.Path(real_fixtures) / FIXTURE).read_text())
  k = np.asarray(data["camera_intrinsics"], np.float64).reshape(3, 3) / downscale
  recorded = data["frames"][:num_frames]
  scale = np.asarray(recorded[0]["scale"], np.float64)
  object_to_world = geometry.rotation_about_y(YAW)
  object_to_world[1, 3] = scale[1] / 2
  views = []
  for frame in recorded:
    object_to_camera = np.eye(4)
    object_to_camera[:3, :3] = geometry.rotation_opencv_to_opengl(np.reshape(frame["rotation"], (3, 3)))
    object_to_camera[:3, 3] = geometry.opencv_to_opengl(np.asarray(frame["translation"]) * DISTANCE_FACTOR)
    views.append(object_to_camera @ np.linalg.inv(object_to_world))
  return BottleScene(width=data["width"] // downscale, height=data["height"] // downscale, fx=k[0, 0], fy=k[1, 1],
                     cx=k[0, 2], cy=k[1, 2], fps=data["fps"], scale=scale, object_to_world=object_to_world,
                     views=views)


def build_sequence(scene: BottleScene) -> annotation_data_pb2.Sequence:
  """The annotation Sequence message of `scene`."""
  sequence = annotation_data_pb2.Sequence()
  obj = sequence.objects.add(id=OBJECT_ID, category="bottle", type=object_pb2.Object.BOUNDING_BOX,
                             method=object_pb2.Object.ANNOTATION)
  obj.rotation.extend(scene.object_to_world[:3, :3].reshape(-1))
  obj.translation.extend(scene.object_to_world[:3, 3])
  obj.scale.extend(scene.scale)
  for x, y, z in geometry.UNIT_BOX:
    obj.keypoints.add(x=x, y=y, z=z)
  for index, view in enumerate(scene.views):
    frame = sequence.frame_annotations.add(frame_id=index, timestamp=index / scene.fps)
    camera = frame.camera
    camera.tracking_state = a_r_capture_metadata_pb2.ARCamera.NORMAL
    camera.transform.extend(np.linalg.inv(view).reshape(-1))
    camera.view_matrix.extend(view.reshape(-1))
    camera.projection_matrix.extend(scene.projection.reshape(-1))
    camera.intrinsics.extend(scene.sensor_intrinsics().reshape(-1))
    camera.image_resolution_width, camera.image_resolution_height = scene.height, scene.width
    centre, normal = scene.plane(index)
    frame.plane_center.extend(centre)
    frame.plane_normal.extend(normal)
    annotation = frame.annotations.add(object_id=OBJECT_ID, visibility=scene.visibility(index))
    points_3d, points_2d = scene.keypoints(index)
    for number, (point, (x, y)) in enumerate(zip(points_3d, points_2d)):
      keypoint = annotation.keypoints.add(id=number)
      keypoint.point_3d.x, keypoint.point_3d.y, keypoint.point_3d.z = point
      keypoint.point_2d.x, keypoint.point_2d.y, keypoint.point_2d.depth = x, y, -point[2]
  return sequence


def frame_image(scene: BottleScene, index) -> np.ndarray:
  """BGR uint8 [height, width, 3]: the background, the projected box, and the frame index as blocks along the top."""
  if scene.texture is None:
    image = np.full((scene.height, scene.width, 3), 96, np.uint8)
  else:
    image = np.roll(scene.texture, 7 * index, axis=1)
  points, normalised = scene.keypoints(index)
  if np.all(points[:, 2] < 0):
    pixels = np.round(normalised * (scene.width, scene.height)).astype(np.int64)
    for a, b in geometry.EDGES:
      cv2.line(image, tuple(map(int, pixels[a])), tuple(map(int, pixels[b])), (0, 200, 0), max(1, scene.width // 300))
  block = scene.width // (MARKER_BITS + 2)
  for bit in range(MARKER_BITS):
    value = 255 if (index >> bit) & 1 else 0
    image[:block, bit * block:(bit + 1) * block] = value
  return image


def frame_index_of(image) -> int:
  """The frame index written by `frame_image`, read from an image of any size."""
  height, width = image.shape[:2]
  block = width / (MARKER_BITS + 2)
  bits = [image[int(block / 2), int((bit + 0.5) * block)].mean() > 128 for bit in range(MARKER_BITS)]
  return sum(1 << bit for bit, on in enumerate(bits) if on)


def write_release(root, scene: BottleScene, sequence_ids=(SEQUENCE_ID,), category="bottle", split="train",
                  landscape_video=False):
  """Writes index/, annotations/ and videos/ under `root`: every sequence of `sequence_ids` is `scene`.

  `landscape_video` stores the frames turned 90 degrees counter-clockwise (as the landscape sensor sees them).
  """
  root = pathlib.Path(root)
  (root / "index").mkdir(parents=True, exist_ok=True)
  (root / "index" / f"{category}_annotations_{split}").write_text("".join(f"{name}\n" for name in sequence_ids))
  annotation = build_sequence(scene).SerializeToString()
  for sequence_id in sequence_ids:
    path = root / "annotations" / f"{sequence_id}.pbdata"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(annotation)
    write_video(root / "videos" / sequence_id / "video.MOV", scene, landscape_video)


def write_video(path, scene: BottleScene, landscape=False, num_frames=None):
  """Writes the scene's frames (the first `num_frames`) as an MPEG-4 video at `path`."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  size = (scene.height, scene.width) if landscape else (scene.width, scene.height)
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), scene.fps, size)
  for index in range(len(scene.views) if num_frames is None else num_frames):
    image = frame_image(scene, index)
    writer.write(cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE) if landscape else image)
  writer.release()


def example_bytes(scene: BottleScene, index, sequence_id=SEQUENCE_ID, image_format=".jpg") -> bytes:
  """A serialized Objectron tf.train.Example of frame `index` (features as in records_shuffled)."""
  example = example_pb2.Example()
  features = example.features.feature
  ok, encoded = cv2.imencode(image_format, frame_image(scene, index))
  assert ok
  points_3d, points_2d = scene.keypoints(index)
  centre, normal = scene.plane(index)
  features["image/encoded"].bytes_list.value.append(encoded.tobytes())
  features["image/filename"].bytes_list.value.append(sequence_id.encode())
  for name, value in (("image/id", [index]), ("image/width", [scene.width]), ("image/height", [scene.height]),
                      ("instance_num", [1]), ("point_num", [9])):
    features[name].int64_list.value.extend(value)
  for name, value in (("point_2d", np.concatenate([points_2d, -points_3d[:, 2:]], axis=1)), ("point_3d", points_3d),
                      ("object/scale", scene.scale), ("object/visibility", [scene.visibility(index)]),
                      ("camera/projection", scene.projection), ("camera/view", scene.views[index]),
                      ("camera/intrinsics", scene.sensor_intrinsics()), ("plane/center", centre),
                      ("plane/normal", normal)):
    features[name].float_list.value.extend(np.asarray(value, np.float64).reshape(-1))
  return example.SerializeToString()


def record_file_path(root, category="bottle", split="train", shard=0, shards=1) -> pathlib.Path:
  """v1/records_shuffled/<category>/<category>_<split>-NNNNN-of-MMMMM under `root` (its folder created)."""
  path = pathlib.Path(root) / "v1" / "records_shuffled" / category / f"{category}_{split}-{shard:05d}-of-{shards:05d}"
  path.parent.mkdir(parents=True, exist_ok=True)
  return path


def write_record_file(path, scene: BottleScene, indices, sequence_id=SEQUENCE_ID):
  """Writes frames `indices` of `scene` as a records_shuffled TFRecord file at `path`."""
  tfrecord.write_records(path, (example_bytes(scene, index, sequence_id) for index in indices))
