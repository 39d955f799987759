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

  python tools/make_synthetic_dataset.py --out DIR --category bike --num-train 400 --num-val 100 --seed 0
"""

import concurrent.futures
import json
import multiprocessing
import os
import pathlib
import time

import cv2
import numpy as np

from centerpose_jax import geometry
from centerpose_jax.data import synthetic_render
from centerpose_jax.data import synthetic_shapes

CATEGORIES = synthetic_shapes.CATEGORIES
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
  elevation = np.deg2rad(rng.uniform(10, 60))
  azimuth = rng.uniform(0, 2 * np.pi)
  direction = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation),
                        np.cos(elevation) * np.cos(azimuth)])
  roll = np.deg2rad(rng.uniform(-8, 8))
  spread = 0.6 if rng.random() < 0.2 else 0.12
  jitter = rng.uniform(-spread, spread, 3) * np.array([1.0, 0.5, 1.0])
  if not instances:
    target = np.array([0.0, 0.2, 0.0]) + jitter
    return look_at(target + rng.uniform(1.0, 3.0) * direction, target, roll)
  corners = np.concatenate([
      geometry.cuboid_vertices(instance.size)[1:] @ instance.rotation.T + instance.translation
      for instance in instances])
  group = corners.mean(axis=0)
  radius = np.linalg.norm(corners - group, axis=1).max()
  target = group + jitter * radius
  wanted = rng.uniform(0.3, 0.75) if len(instances) == 1 else rng.uniform(0.55, 0.9)
  distance = 2 * radius * camera_k[0, 0] / (wanted * min(width, height))
  for _ in range(3):  # perspective makes the span only roughly proportional to 1 / distance
    world_to_camera = look_at(target + distance * direction, target, roll)
    span = _image_span(world_to_camera, corners, camera_k, width, height)
    if not np.isfinite(span):
      break
    distance *= span / wanted
  return look_at(target + max(distance, radius + 2 * _NEAREST_DEPTH) * direction, target, roll)


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
  elevation, azimuth = np.deg2rad(rng.uniform(25, 80)), rng.uniform(0, 2 * np.pi)
  light = np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
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
    category: one of `CATEGORIES`.
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


def _write_frame(task):
  """Renders and writes one frame; returns its objects' (visibility, span) pairs, or None when skipped."""
  folder, split, index, category, width, height, max_objects, seed, skip_existing = task
  image_path = pathlib.Path(folder) / f"{index:06d}{IMAGE_EXTENSION}"
  json_path = image_path.with_suffix(".json")
  if skip_existing and image_path.exists() and json_path.exists():
    return None
  image, annotation = render_frame(frame_rng(seed, split, index), category, width, height, max_objects)
  if not cv2.imwrite(str(image_path), image):
    raise OSError(f"could not write {image_path}")
  json_path.write_text(json.dumps(annotation, indent=1))
  return [(obj["visibility"], span) for obj, span in zip(annotation["objects"], span_fraction(annotation))]


def generate_dataset(out_dir, category, num_train, num_val, seed, width=240, height=320, max_objects=3,
                     skip_existing=False, workers=1) -> dict:
  """Writes `out_dir/train/` and `out_dir/val/` as NNNNNN.png + NNNNNN.json pairs, and `out_dir/synthetic.json`.

  Args:
    out_dir: output folder (created).
    category: one of `CATEGORIES`.
    num_train, num_val: number of frames per split.
    seed: the dataset is a function of (seed, split, frame index) and the other arguments.
    width, height: image size in pixels (portrait or landscape).
    max_objects: at most this many instances per frame.
    skip_existing: keep frames whose image and JSON both exist instead of rendering them again.
    workers: processes rendering in parallel (1 renders in this process); the output does not depend on it.

  Returns:
    Summary: per split the number of images, objects, rendered and skipped frames; the rendering speed;
    visibility and image-span statistics of the rendered objects.
  """
  if category not in CATEGORIES:
    raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  check_settings(out_dir, {"category": category, "seed": seed, "width": width, "height": height,
                           "max_objects": max_objects})
  tasks = []
  for split, count in zip(SPLITS, (num_train, num_val)):
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    check_split_folder(folder, count)
    tasks += [(str(folder), split, index, category, width, height, max_objects, seed, skip_existing)
              for index in range(count)]
  start = time.perf_counter()
  if workers > 1:
    context = multiprocessing.get_context("spawn")  # safe whatever the parent process has imported
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      results = list(pool.map(_write_frame, tasks, chunksize=8))
  else:
    results = [_write_frame(task) for task in tasks]
  seconds = time.perf_counter() - start
  summary = {"category": category, "width": width, "height": height, "seed": seed, "splits": {}}
  for split, count in zip(SPLITS, (num_train, num_val)):
    written = [result for task, result in zip(tasks, results) if task[1] == split and result is not None]
    summary["splits"][split] = {"images": count, "rendered": len(written), "skipped": count - len(written),
                                "objects_rendered": sum(len(objects) for objects in written)}
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
