"""Synthetic CenterPose datasets: rendered objects of one category with exact Objectron/TAO labels.

Each frame shows 0-3 instances of the category standing on a tiled ground plane (world y up, plane y = 0),
seen by a pinhole camera from 10-60 degrees above the plane. Every label field that TAO's loader, its
symmetric copies and its evaluator read is written, in the conventions of `geometry.py`:

  camera_data: width, height, intrinsics {fx, fy, cx, cy} (pixels), camera_projection_matrix (Objectron 4x4,
               `geometry.projection_matrix_from_intrinsics`), camera_view_matrix (world -> OpenGL camera)
  AR_data:     plane_center, plane_normal (the ground, OpenGL camera frame; the normal is the world up)
  objects[]:   location, quaternion_xyzw, keypoints_3d (OpenGL camera frame, metres), projected_cuboid (pixels,
               the P-projection of keypoints_3d), scale (box size x, y, z in metres; y is up), visibility
               (visible fraction of the silhouette), class, name, provenance

The objects' bottom faces lie on the plane, so the evaluator's metric-scale recovery from AR_data is exact.

Sequences (`generate_sequences`) are video ground truth: a camera orbiting still objects on a smooth path (one
object may drive along the ground), every frame labelled as above, plus the frames as an mp4.

  python tools/make_synthetic_dataset.py --out DIR --category bike --num-train 400 --num-val 100 --seed 0
  python tools/make_synthetic_dataset.py --out DIR --category camera --num-train 0 --num-val 0 --sequences 4
"""

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import time
import typing

import cv2
import numpy as np

from centerpose_jax import categories
from centerpose_jax import geometry
from centerpose_jax.data import synthetic_render
from centerpose_jax.data import synthetic_shapes

SPLITS = ("train", "val")
IMAGE_EXTENSION = ".png"
SETTINGS_FILE = "synthetic.json"  # in the output folder: the settings its frames were generated with
_NEAREST_DEPTH = 0.1  # metres: every object vertex must be at least this far in front of the camera.
_ATTEMPTS = 50


def _intrinsics(rng, width, height) -> np.ndarray:
  """[3, 3] K with fx = fy ~ U(0.8, 1.05) * max(W, H) and the principal point within 2% of the centre."""
  focal = max(width, height) * rng.uniform(0.8, 1.05)
  cx = width / 2 + rng.uniform(-0.02, 0.02) * width
  cy = height / 2 + rng.uniform(-0.02, 0.02) * height
  return geometry.camera_matrix(focal, focal, cx, cy)


def _place_instances(rng, category, count):
  """`count` random instances standing on the ground (y = 0) around the origin, footprints not overlapping."""
  instances, radii = [], []
  while len(instances) < count:
    parts, size = synthetic_shapes.build_model(category, rng)
    radius = 0.5 * np.hypot(size[0], size[2])
    for _ in range(_ATTEMPTS):
      if not instances:
        position = np.zeros(2)
      else:
        anchor = rng.integers(len(instances))
        angle = rng.uniform(0, 2 * np.pi)
        reach = (radii[anchor] + radius) * rng.uniform(1.05, 1.4)
        position = instances[anchor].translation[[0, 2]] + reach * np.array([np.cos(angle), np.sin(angle)])
      if all(np.linalg.norm(position - other.translation[[0, 2]]) > 1.05 * (radius + other_radius)
             for other, other_radius in zip(instances, radii)):
        break
    else:
      continue
    yaw = rng.uniform(0, 2 * np.pi)
    instances.append(synthetic_render.Instance(
        parts=parts, size=size, rotation=geometry.rotation_about_y(yaw)[:3, :3],
        translation=np.array([position[0], size[1] / 2, position[1]])))
    radii.append(radius)
  return instances


def look_at(camera_centre, target, roll) -> np.ndarray:
  """[4, 4] world (y up) -> OpenCV camera transform of a camera at `camera_centre` looking at `target`.

  The image's x axis stays horizontal (then turned by `roll` radians about the viewing direction); the
  camera must not look straight up or down.
  """
  forward = np.asarray(target, np.float64) - camera_centre
  forward /= np.linalg.norm(forward)
  right = np.cross(forward, (0.0, 1.0, 0.0))
  right /= np.linalg.norm(right)
  down = np.cross(forward, right)
  c, s = np.cos(roll), np.sin(roll)
  right, down = c * right + s * down, -s * right + c * down
  transform = np.eye(4)
  transform[:3, :3] = np.stack([right, down, forward])
  transform[:3, 3] = -transform[:3, :3] @ camera_centre
  return transform


def _direction(elevation, azimuth) -> np.ndarray:
  """[3] world unit vector `elevation` radians above the ground, turned `azimuth` radians about y from +z."""
  return np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])


def _image_span(world_to_camera, corners_world, camera_k, width, height) -> float:
  """The 2D box of world points [N, 3] as a fraction of the image (the larger of x and y); inf if behind."""
  points = geometry.apply_transform(world_to_camera, corners_world)
  if (points[:, 2] < _NEAREST_DEPTH).any():
    return np.inf
  pixels = geometry.project_with_intrinsics(points, camera_k)
  extent = pixels.max(axis=0) - pixels.min(axis=0)
  return max(extent[0] / width, extent[1] / height)


def _sample_view(rng, instances, camera_k, width, height):
  """A world -> OpenCV camera transform that frames the instances from 10-60 degrees above the ground.

  The distance is set so that the instances' cuboids together span 30-75% of the image (one instance) or
  55-90% (several); the aim point is jittered, a lot in one frame of five, so that some objects are cut by
  the image border.
  """
  direction = _direction(np.deg2rad(rng.uniform(10, 60)), rng.uniform(0, 2 * np.pi))
  roll = np.deg2rad(rng.uniform(-8, 8))
  spread = 0.6 if rng.random() < 0.2 else 0.12
  jitter = rng.uniform(-spread, spread, 3) * np.array([1.0, 0.5, 1.0])
  if not instances:
    target = np.array([0.0, 0.2, 0.0]) + jitter
    return look_at(target + rng.uniform(1.0, 3.0) * direction, target, roll)
  corners, group, radius = _group_extent(instances)
  target = group + jitter * radius
  wanted = rng.uniform(0.3, 0.75) if len(instances) == 1 else rng.uniform(0.55, 0.9)
  distance = _framing_distance(corners, radius, target, direction, roll, wanted, camera_k, width, height)
  return look_at(target + distance * direction, target, roll)


def _group_extent(instances):
  """(corners [8N, 3], their centre [3], radius of the sphere about it holding them), world frame, metres."""
  corners = np.concatenate([
      geometry.cuboid_vertices(instance.size)[1:] @ instance.rotation.T + instance.translation
      for instance in instances])
  centre = corners.mean(axis=0)
  return corners, centre, np.linalg.norm(corners - centre, axis=1).max()


def _framing_distance(corners, radius, target, direction, roll, wanted, camera_k, width, height) -> float:
  """The camera distance from `target` along the unit `direction` at which `corners` span `wanted` of the image."""
  distance = 2 * radius * camera_k[0, 0] / (wanted * min(width, height))
  for _ in range(3):  # perspective makes the span only roughly proportional to 1 / distance
    world_to_camera = look_at(target + distance * direction, target, roll)
    span = _image_span(world_to_camera, corners, camera_k, width, height)
    if not np.isfinite(span):
      break
    distance *= span / wanted
  return max(distance, radius + 2 * _NEAREST_DEPTH)


def _framing_ok(world_to_camera, instances, camera_k, width, height) -> bool:
  """Whether every vertex is in front of the camera and every box centre projects inside the image."""
  for instance in instances:
    to_camera = instance.to_camera(world_to_camera)
    for part in instance.parts:
      if (geometry.apply_transform(to_camera, part.vertices)[:, 2] < _NEAREST_DEPTH).any():
        return False
    centre = geometry.project_with_intrinsics(to_camera[:3, 3][None], camera_k)[0]
    if not (0 <= centre[0] < width and 0 <= centre[1] < height):
      return False
  return True


def _style(rng) -> synthetic_render.Style:
  """Random lighting and a plain-ish background: muted sky gradient and a low-contrast tiled floor."""
  light = _direction(np.deg2rad(rng.uniform(25, 80)), rng.uniform(0, 2 * np.pi))
  floor = rng.uniform(60, 200, 3)
  floor = floor.mean() + rng.uniform(0.3, 0.7) * (floor - floor.mean())  # desaturate
  contrast = rng.uniform(0.88, 0.97)
  horizon = rng.uniform(120, 230, 3)
  return synthetic_render.Style(
      light_direction=light, ambient=rng.uniform(0.4, 0.65), sky_top=horizon * rng.uniform(0.6, 0.9),
      sky_horizon=horizon, ground_colours=np.stack([floor, floor * contrast]),
      tile_size=rng.uniform(0.15, 0.6), fog_distance=rng.uniform(4.0, 12.0),
      shadow_strength=rng.uniform(0.2, 0.45), noise_sigma=rng.uniform(1.0, 4.0), blur=bool(rng.random() < 0.3))


def frame_annotation(category, instances, visibility, camera_k, world_to_camera, width, height) -> dict:
  """The CenterPose/Objectron JSON dict of a rendered frame (see the module docstring)."""
  projection = geometry.projection_matrix_from_intrinsics(camera_k[0, 0], camera_k[1, 1], camera_k[0, 2],
                                                          camera_k[1, 2], width, height)
  view = geometry.OPENCV_TO_OPENGL @ world_to_camera
  if instances:
    ground_point = np.mean([instance.translation for instance in instances], axis=0) * (1.0, 0.0, 1.0)
  else:
    ground_point = np.zeros(3)
  objects = []
  for index, (instance, visible) in enumerate(zip(instances, visibility)):
    to_opengl = geometry.OPENCV_TO_OPENGL @ instance.to_camera(world_to_camera)
    keypoints = geometry.apply_transform(to_opengl, geometry.cuboid_vertices(instance.size))
    objects.append({
        "class": category,
        "name": f"{category}_{index}",
        "provenance": "synthetic",
        "location": to_opengl[:3, 3].tolist(),
        "quaternion_xyzw": geometry.matrix_to_quaternion(to_opengl[:3, :3]).tolist(),
        "keypoints_3d": keypoints.tolist(),
        "projected_cuboid": geometry.project_with_projection_matrix(keypoints, projection, width, height).tolist(),
        "scale": instance.size.tolist(),
        "visibility": float(visible),
    })
  return {
      "camera_data": {
          "width": width,
          "height": height,
          "intrinsics": {"fx": camera_k[0, 0], "fy": camera_k[1, 1], "cx": camera_k[0, 2], "cy": camera_k[1, 2]},
          "camera_projection_matrix": projection.tolist(),
          "camera_view_matrix": view.tolist(),
      },
      "AR_data": {
          "plane_center": geometry.apply_transform(view, ground_point[None])[0].tolist(),
          "plane_normal": (view[:3, :3] @ np.array([0.0, 1.0, 0.0])).tolist(),
      },
      "objects": objects,
  }


def render_frame(rng, category, width, height, max_objects=3):
  """Renders one random frame of `category` and its label.

  Args:
    rng: numpy Generator; the frame is a function of its state.
    category: one of `categories.NAMES`.
    width, height: image size in pixels.
    max_objects: the frame holds 0 (one frame in twenty) or 1..max_objects instances.

  Returns:
    (image_bgr, annotation): uint8 [H, W, 3] BGR image and the CenterPose JSON dict.
  """
  count = 0 if rng.random() < 0.05 or max_objects < 1 else int(rng.integers(1, max_objects + 1))
  camera_k = _intrinsics(rng, width, height)
  for _ in range(_ATTEMPTS):
    instances = _place_instances(rng, category, count)
    for _ in range(_ATTEMPTS):
      world_to_camera = _sample_view(rng, instances, camera_k, width, height)
      if _framing_ok(world_to_camera, instances, camera_k, width, height):
        break
    else:
      continue
    break
  else:
    raise RuntimeError(f"could not frame {count} {category} objects in {width}x{height} pixels")
  image, visibility = synthetic_render.render(width, height, camera_k, world_to_camera, instances, _style(rng), rng)
  return image, frame_annotation(category, instances, visibility, camera_k, world_to_camera, width, height)


def frame_rng(seed, split, index) -> np.random.Generator:
  """The Generator of frame `index` of `split`: frames are independent and reproducible one by one."""
  return np.random.default_rng([seed, SPLITS.index(split), index])


def span_fraction(annotation) -> list:
  """Per object: the 2D box of its projected corners as a fraction of the image (larger of x and y)."""
  width, height = annotation["camera_data"]["width"], annotation["camera_data"]["height"]
  spans = []
  for obj in annotation["objects"]:
    corners = np.array(obj["projected_cuboid"])[1:]
    extent = corners.max(axis=0) - corners.min(axis=0)
    spans.append(float(max(extent[0] / width, extent[1] / height)))
  return spans


def check_split_folder(folder, count):
  """Refuses a split folder holding images beyond the requested ones (they would be loaded too)."""
  expected = {f"{index:06d}{IMAGE_EXTENSION}" for index in range(count)}
  extra = sorted(name for name in os.listdir(folder)
                 if name.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")) and name not in expected)
  if extra:
    raise ValueError(f"{folder} already holds {len(extra)} other images (e.g. {extra[0]}); "
                     "use an empty output folder")


def check_settings(out_dir, settings):
  """Writes `out_dir/synthetic.json` (the generator's settings) or refuses a folder made with other settings.

  Frames kept by `skip_existing` must come from the same category, seed, image size and object count, or the
  dataset would silently mix two generators' outputs.
  """
  path = out_dir / SETTINGS_FILE
  if path.exists():
    previous = json.loads(path.read_text())
    changed = sorted(key for key in settings if previous.get(key) != settings[key])
    if changed:
      raise ValueError(f"{out_dir} holds a synthetic dataset generated with other settings ("
                       + ", ".join(f"{key} {previous.get(key)!r}, now {settings[key]!r}" for key in changed)
                       + "); use an empty output folder")
  path.write_text(json.dumps(settings, indent=1))


def _save_frame(image_path, image, annotation):
  """Writes a rendered frame's image and JSON label; returns its objects' (visibility, span) pairs."""
  if not cv2.imwrite(str(image_path), image):
    raise OSError(f"could not write {image_path}")
  image_path.with_suffix(".json").write_text(json.dumps(annotation, indent=1))
  return [(obj["visibility"], span) for obj, span in zip(annotation["objects"], span_fraction(annotation))]


def _exists(image_path, skip_existing) -> bool:
  """Whether a frame is kept as it is: `skip_existing` and both its image and its JSON exist."""
  return skip_existing and image_path.exists() and image_path.with_suffix(".json").exists()


def _write_frame(task):
  """Renders and writes one frame; returns its objects' (visibility, span) pairs, or None when skipped."""
  folder, split, index, category, width, height, max_objects, seed, skip_existing = task
  image_path = pathlib.Path(folder) / f"{index:06d}{IMAGE_EXTENSION}"
  if _exists(image_path, skip_existing):
    return None
  image, annotation = render_frame(frame_rng(seed, split, index), category, width, height, max_objects)
  return _save_frame(image_path, image, annotation)


def _run_tasks(function, tasks, workers) -> list:
  """[function(task) for task in tasks], on `workers` processes when workers > 1."""
  if workers > 1:
    context = multiprocessing.get_context("spawn")  # safe whatever the parent process has imported
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      return list(pool.map(function, tasks, chunksize=8))
  return [function(task) for task in tasks]


def _add_statistics(summary, results, seconds) -> dict:
  """`summary` with the rendering speed and the rendered objects' visibility and image-span statistics."""
  rendered = [result for result in results if result is not None]
  summary["seconds"] = seconds
  summary["images_per_second"] = len(rendered) / seconds if rendered else 0.0
  objects = np.array([pair for result in rendered for pair in result]).reshape(-1, 2)
  if len(objects):
    visibility, spans = objects[:, 0], objects[:, 1]
    summary["objects"] = {
        "count": len(objects),
        "mean_visibility": float(visibility.mean()),
        "visible_95_percent_fraction": float(np.mean(visibility >= 0.95)),
        "span_fraction_percentiles_5_50_95": np.percentile(spans, [5, 50, 95]).round(3).tolist(),
    }
  return summary


def generate_dataset(out_dir, category, num_train, num_val, seed, width=240, height=320, max_objects=3,
                     skip_existing=False, workers=1) -> dict:
  """Writes `out_dir/train/` and `out_dir/val/` as NNNNNN.png + NNNNNN.json pairs, and `out_dir/synthetic.json`.

  Args:
    out_dir: output folder (created).
    category: one of `categories.NAMES`.
    num_train, num_val: number of frames per split (a split of 0 frames gets no folder).
    seed: the dataset is a function of (seed, split, frame index) and the other arguments.
    width, height: image size in pixels (portrait or landscape).
    max_objects: at most this many instances per frame.
    skip_existing: keep frames whose image and JSON both exist instead of rendering them again.
    workers: processes rendering in parallel (1 renders in this process); the output does not depend on it.

  Returns:
    Summary: per split the number of images, objects, rendered and skipped frames; the rendering speed;
    visibility and image-span statistics of the rendered objects.
  """
  _check_category(category)
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  check_settings(out_dir, {"category": category, "seed": seed, "width": width, "height": height,
                            "max_objects": max_objects})
  tasks = []
  for split, count in zip(SPLITS, (num_train, num_val)):
    if count == 0:
      continue
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    check_split_folder(folder, count)
    tasks += [(str(folder), split, index, category, width, height, max_objects, seed, skip_existing)
              for index in range(count)]
  start = time.perf_counter()
  results = _run_tasks(_write_frame, tasks, workers)
  seconds = time.perf_counter() - start
  summary = {"category": category, "width": width, "height": height, "seed": seed, "splits": {}}
  for split, count in zip(SPLITS, (num_train, num_val)):
    written = [result for task, result in zip(tasks, results) if task[1] == split and result is not None]
    summary["splits"][split] = {"images": count, "rendered": len(written), "skipped": count - len(written),
                                "objects_rendered": sum(len(objects) for objects in written)}
  return _add_statistics(summary, results, seconds)


def _check_category(category):
  if category not in categories.NAMES:
    raise ValueError(f"unknown category {category!r}; expected one of {', '.join(categories.NAMES)}")


# Sequences: a camera moving smoothly around still objects (one of which may slide and turn), for video.

SEQUENCES_FOLDER = "sequences"
_SEQUENCE_STREAM = len(SPLITS)  # seeds [seed, stream, ...] of the sequences follow the splits'


@dataclasses.dataclass
class SequencePlan:
  """Everything of a sequence but the per-frame noise.

  Attributes:
    camera_k: [3, 3] intrinsics, pixels (fixed over the sequence).
    style: lighting and background (fixed).
    instances: per frame, the `synthetic_render.Instance`s (world frame).
    world_to_camera: per frame, the [4, 4] world -> OpenCV camera transform.
  """
  camera_k: np.ndarray
  style: synthetic_render.Style
  instances: list
  world_to_camera: list


def _footprint_radius(instance) -> float:
  return 0.5 * float(np.hypot(instance.size[0], instance.size[2]))


def _object_paths(rng, instances, times, moving_object):
  """Per frame the instances; with `moving_object` the first one drives along the ground, turning as it goes
  (0.2-0.5 of its footprint radius per second, up to 30 degrees per second). None if it would hit another."""
  if not moving_object:
    return [instances] * len(times)
  mover, others = instances[0], instances[1:]
  radius = _footprint_radius(mover)
  speed = rng.uniform(0.2, 0.5) * radius
  turn_rate = np.deg2rad(rng.uniform(-30, 30))
  heading = rng.uniform(0, 2 * np.pi) + turn_rate * times  # [T] radians about the world y axis
  steps = np.diff(times, prepend=times[0])[:, None] * speed * np.stack([np.sin(heading), np.cos(heading)], axis=1)
  ground = mover.translation[[0, 2]] + np.cumsum(steps, axis=0)  # [T, 2] (x, z)
  for other in others:
    gaps = np.linalg.norm(ground - other.translation[[0, 2]], axis=1)
    if (gaps <= 1.05 * (radius + _footprint_radius(other))).any():
      return None
  frames = []
  for (x, z), turned in zip(ground, heading - heading[0]):
    moved = synthetic_render.Instance(
        parts=mover.parts, size=mover.size, rotation=geometry.rotation_about_y(turned)[:3, :3] @ mover.rotation,
        translation=np.array([x, mover.translation[1], z]))
    frames.append([moved] + others)
  return frames


def _camera_path(rng, frames, camera_k, width, height, times) -> list:
  """Per frame a world -> OpenCV camera transform: an orbit about the objects at 10-25 degrees per second,
  15-45 degrees above the ground, with slow sinusoidal changes of elevation, distance, roll and aim point."""
  corners, centre, radius = _group_extent(frames[0] + frames[-1])
  phase = lambda period: 2 * np.pi * times / period + rng.uniform(0, 2 * np.pi)
  elevation = np.deg2rad(rng.uniform(15, 45) + rng.uniform(3, 8) * np.sin(phase(rng.uniform(3, 6))))
  azimuth = rng.uniform(0, 2 * np.pi) + np.deg2rad(rng.uniform(10, 25)) * rng.choice([-1.0, 1.0]) * times
  roll = np.deg2rad(rng.uniform(-5, 5) + 2.0 * np.sin(phase(rng.uniform(2, 4))))
  wanted = rng.uniform(0.35, 0.6) if len(frames[0]) == 1 else rng.uniform(0.55, 0.8)
  distance = _framing_distance(corners, radius, centre, _direction(elevation[0], azimuth[0]), roll[0], wanted,
                               camera_k, width, height) * (1 + 0.12 * np.sin(phase(rng.uniform(3, 6))))
  aim = centre + 0.05 * radius * np.stack([np.sin(phase(rng.uniform(1.5, 3))) for _ in range(3)], axis=1)
  return [look_at(target + d * _direction(e, a), target, r)
          for target, d, e, a, r in zip(aim, distance, elevation, azimuth, roll)]


def plan_sequence(rng, category, width, height, num_frames, fps=30.0, max_objects=3, moving_object=False):
  """The objects, camera path, intrinsics and style of a sequence of `num_frames` frames at `fps`.

  The sequence holds 1..max_objects instances of `category`; every box centre projects inside every frame and
  every vertex stays in front of the camera.
  """
  times = np.arange(num_frames) / float(fps)
  camera_k = _intrinsics(rng, width, height)
  count = int(rng.integers(1, max(max_objects, 1) + 1))
  for _ in range(_ATTEMPTS):
    frames = _object_paths(rng, _place_instances(rng, category, count), times, moving_object)
    if frames is None:
      continue
    views = _camera_path(rng, frames, camera_k, width, height, times)
    if all(_framing_ok(view, instances, camera_k, width, height) for view, instances in zip(views, frames)):
      return SequencePlan(camera_k, _style(rng), frames, views)
  raise RuntimeError(f"could not plan a {num_frames}-frame sequence of {count} {category} objects")


def render_sequence_frame(plan, category, width, height, frame, rng):
  """(image_bgr [H, W, 3] uint8, annotation) of frame `frame` of a `SequencePlan`; `rng` draws its noise."""
  instances, world_to_camera = plan.instances[frame], plan.world_to_camera[frame]
  image, visibility = synthetic_render.render(width, height, plan.camera_k, world_to_camera, instances,
                                              plan.style, rng)
  return image, frame_annotation(category, instances, visibility, plan.camera_k, world_to_camera, width, height)


class _SequenceKey(typing.NamedTuple):
  """What a sequence is a function of (`generate_sequences`' arguments and the sequence's index)."""
  seed: int
  sequence: int
  category: str
  width: int
  height: int
  num_frames: int
  fps: float
  max_objects: int
  moving_object: bool


@functools.lru_cache(maxsize=2)
def _sequence_plan(key: _SequenceKey) -> SequencePlan:
  """The plan of a sequence (cached: every frame of a sequence is rendered from it)."""
  rng = np.random.default_rng([key.seed, _SEQUENCE_STREAM, key.sequence])
  return plan_sequence(rng, key.category, key.width, key.height, key.num_frames, key.fps, key.max_objects,
                       key.moving_object)


def _write_sequence_frame(task):
  """Renders and writes one frame of a sequence; returns its objects' (visibility, span), or None if skipped."""
  folder, key, frame, skip_existing = task
  image_path = pathlib.Path(folder) / f"{frame:06d}{IMAGE_EXTENSION}"
  if _exists(image_path, skip_existing):
    return None
  rng = np.random.default_rng([key.seed, _SEQUENCE_STREAM, key.sequence, frame + 1])
  image, annotation = render_sequence_frame(_sequence_plan(key), key.category, key.width, key.height, frame, rng)
  return _save_frame(image_path, image, annotation)


def _write_video(folder, video_path, num_frames, fps, width, height):
  """Encodes the frames of a sequence folder into an mp4 (MPEG-4 part 2, OpenCV's `mp4v`)."""
  writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
  if not writer.isOpened():
    raise OSError(f"could not open {video_path} for writing (OpenCV's mp4v encoder)")
  try:
    for frame in range(num_frames):
      writer.write(cv2.imread(str(folder / f"{frame:06d}{IMAGE_EXTENSION}"), cv2.IMREAD_COLOR))
  finally:
    writer.release()


def generate_sequences(out_dir, category, num_sequences, num_frames, seed, width=240, height=320, max_objects=3,
                       fps=30.0, moving_object=False, skip_existing=False, workers=1) -> dict:
  """Writes `num_sequences` video sequences under `out_dir/sequences/` (see docs/data-format.md):

    sequences/NNNN/NNNNNN.png + .json   every frame, labelled as the train/val frames
    sequences/NNNN.mp4                  the frames as a video at `fps`
    sequences/NNNN.json                 camera_data (width, height, intrinsics) for infer.py, fps, num_frames
    sequences/synthetic.json            the settings

  Args:
    out_dir: the dataset folder (created).
    category: one of `categories.NAMES`.
    num_sequences, num_frames: sequences, and frames per sequence.
    seed: the sequences are a function of (seed, sequence index) and the other arguments (their seeds differ
      from the train and val frames').
    width, height: image size in pixels.
    max_objects: each sequence holds 1..max_objects still objects.
    fps: frames per second of the camera motion and of the video.
    moving_object: the first object of each sequence drives along the ground, turning.
    skip_existing: keep frames whose image and JSON exist (the videos are written again).
    workers: rendering processes; the output does not depend on it.

  Returns:
    Summary: sequences, frames, rendered and skipped frames, rendering speed, object statistics.
  """
  _check_category(category)
  folder = pathlib.Path(out_dir) / SEQUENCES_FOLDER
  folder.mkdir(parents=True, exist_ok=True)
  fps = float(fps)
  plan_settings = {"category": category, "seed": seed, "width": width, "height": height,
                   "max_objects": max_objects, "frames": num_frames, "fps": fps, "moving_object": moving_object}
  check_settings(folder, plan_settings)
  tasks = []
  for sequence in range(num_sequences):
    frames_folder = folder / f"{sequence:04d}"
    frames_folder.mkdir(exist_ok=True)
    check_split_folder(frames_folder, num_frames)
    key = _SequenceKey(seed, sequence, category, width, height, num_frames, fps, max_objects, moving_object)
    tasks += [(str(frames_folder), key, frame, skip_existing) for frame in range(num_frames)]
  start = time.perf_counter()
  results = _run_tasks(_write_sequence_frame, tasks, workers)
  for sequence in range(num_sequences):
    frames_folder = folder / f"{sequence:04d}"
    _write_video(frames_folder, folder / f"{sequence:04d}.mp4", num_frames, fps, width, height)
    camera = json.loads((frames_folder / "000000.json").read_text())["camera_data"]
    sidecar = {"camera_data": {key: camera[key] for key in ("width", "height", "intrinsics")}, "fps": fps,
               "num_frames": num_frames, "frames": frames_folder.name}
    (folder / f"{sequence:04d}.json").write_text(json.dumps(sidecar, indent=1))
  seconds = time.perf_counter() - start
  rendered = sum(result is not None for result in results)
  summary = {"category": category, "width": width, "height": height, "seed": seed, "fps": fps,
             "sequences": num_sequences, "frames": len(tasks), "rendered": rendered,
             "skipped": len(tasks) - rendered, "output_dir": str(folder)}
  return _add_statistics(summary, results, seconds)
