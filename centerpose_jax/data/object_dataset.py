"""A labelled, domain-randomised CenterPose dataset of one object, rendered from its 3D model on the CPU.

Each frame shows the object standing upright on a ground plane (world y up, plane y = 0, the object's box
centred at (0, size_y / 2, 0)), path traced by Mitsuba 3 (`mitsuba_render`), with randomised:

  camera      focal length, distance (as the image fraction the object spans), elevation, azimuth, small roll,
              and where in the image the object's centre falls
  lighting    a uniform sky, a sun and 0-2 point lights: intensity, colour and direction
  background  the user's photos (composited behind the scene and used as ground textures), else procedural
              clutter and textures; the ground plane is left out in some frames
  clutter     distractor primitives standing around the object and an occluder between camera and object
  material    the object's colour (per channel gain) and roughness
  sensor      exposure (around an automatic exposure), blur and noise

Every range is a field of `RenderOptions` and is written to the dataset's settings file. Labels are written by
`synthetic.frame_annotation` (the same code as the synthetic-shape generator): the cuboid is the mesh's tight
box in its own frame, poses and `keypoints_3d` are in the OpenGL camera frame, `projected_cuboid` is their
projection with the written intrinsics, `AR_data` is the ground plane and `visibility` the visible fraction of
the object's silhouette measured on the renderer's object mask.

  python tools/render_object_dataset.py --mesh my_object.glb --out DIR --num-train 800 --num-val 100
"""

import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import pathlib
import time
from typing import Optional, Tuple

import cv2
import numpy as np
import tqdm

from centerpose_jax import geometry
from centerpose_jax.data import mitsuba_render
from centerpose_jax.data import object_mesh
from centerpose_jax.data import procedural_textures
from centerpose_jax.data import synthetic
from centerpose_jax.data import synthetic_render
from centerpose_jax.errors import CenterPoseError

SPLITS = synthetic.SPLITS
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VAL_PHOTO_EVERY = 5  # without --val-backgrounds, every fifth photo (sorted by name) is kept for validation only
_ATTEMPTS = 20


def _option(default, help_text):
  return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """The randomisation ranges and render settings; (low, high) pairs are sampled uniformly per frame."""
  width: int = _option(512, "image width, pixels")
  height: int = _option(512, "image height, pixels")
  samples: int = _option(16, "path-tracing samples per pixel")
  max_depth: int = _option(3, "longest light path: 2 = direct light only, 3 = one indirect bounce")
  focal: Tuple[float, float] = _option((0.8, 1.2), "focal length fx = fy as a multiple of the larger image side")
  span: Tuple[float, float] = _option((0.3, 0.75), "camera distance, as the fraction of the shorter image side "
                                                   "that the object's bounding sphere spans")
  elevation: Tuple[float, float] = _option((5.0, 65.0), "camera elevation above the ground, degrees")
  azimuth: Tuple[float, float] = _option((0.0, 360.0), "camera azimuth around the object, degrees (0 = front)")
  roll: Tuple[float, float] = _option((-10.0, 10.0), "camera roll about its viewing axis, degrees")
  aim: float = _option(0.35, "the object's centre falls within this fraction of half the image from its centre")
  sky: Tuple[float, float] = _option((0.1, 0.8), "uniform sky radiance (linear RGB, before tinting)")
  sun: Tuple[float, float] = _option((0.0, 3.0), "sun irradiance (0 = overcast)")
  sun_elevation: Tuple[float, float] = _option((20.0, 85.0), "sun elevation, degrees")
  point_lights: Tuple[int, int] = _option((0, 2), "number of point lights near the object")
  point_light_power: Tuple[float, float] = _option((0.3, 2.0), "each point light's irradiance at the object")
  light_tint: float = _option(0.25, "light colour: each channel scaled by 1 + U(-tint, tint)")
  texture_contrast: Tuple[float, float] = _option((1.0, 1.0), "contrast of each procedural texture and background "
                                                             "(1 = full, 0 = a flat colour)")
  ground_probability: float = _option(0.85, "probability that the frame has a textured ground plane")
  ground_tile: Tuple[float, float] = _option((1.0, 8.0), "ground texture repeat length, in object radii")
  distractors: Tuple[int, int] = _option((0, 4), "number of distractor primitives around the object")
  occluder_probability: float = _option(0.3, "probability of an occluder between the camera and the object")
  occluder_size: Tuple[float, float] = _option((0.2, 0.6), "occluder size as a fraction of the object's "
                                                           "apparent radius")
  colour_jitter: float = _option(0.15, "object colour: each channel scaled by 1 + U(-jitter, jitter)")
  roughness_jitter: float = _option(0.25, "object roughness: + U(-jitter, jitter), clipped to [0, 1]")
  exposure: Tuple[float, float] = _option((-0.7, 0.7), "exposure around the automatic one, EV (stops)")
  blur: Tuple[float, float] = _option((0.0, 1.2), "Gaussian blur sigma in pixels at 512 px (scaled with the size)")
  noise: Tuple[float, float] = _option((0.0, 0.03), "Gaussian sensor noise sigma, fraction of full scale")

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if isinstance(value, tuple) and (len(value) != 2 or value[0] > value[1]):
        raise CenterPoseError(f"render option {field.name}: expected a (low, high) pair with low <= high, "
                              f"got {value}")
    if self.width < 16 or self.height < 16 or self.samples < 1 or self.max_depth < 2:
      raise CenterPoseError("render options: width and height must be >= 16, samples >= 1, max_depth >= 2")
    if not (0 < self.span[0] and self.span[1] < 1):
      raise CenterPoseError(f"render option span: expected fractions in (0, 1), got {self.span}")


@dataclasses.dataclass(frozen=True)
class Backgrounds:
  """The photos each split draws from (empty: procedural backgrounds)."""
  train: Tuple[str, ...] = ()
  val: Tuple[str, ...] = ()

  def for_split(self, split) -> Tuple[str, ...]:
    return self.train if split == "train" else self.val


def _photos(folder) -> list:
  """Sorted paths of the photos below `folder`."""
  folder = pathlib.Path(folder)
  if not folder.is_dir():
    raise CenterPoseError(f"{folder}: no such background folder")
  photos = sorted(str(path) for path in folder.rglob("*") if path.suffix.lower() in PHOTO_EXTENSIONS)
  if not photos:
    raise CenterPoseError(f"{folder}: no background photos ({', '.join(PHOTO_EXTENSIONS)})")
  return photos


def find_backgrounds(folder=None, val_folder=None) -> Backgrounds:
  """The photos of `folder` (recursively) split for training and validation so that no validation background is
  seen in training: `val_folder` for validation if given, else every `VAL_PHOTO_EVERY`-th photo of `folder`."""
  if folder is None:
    if val_folder is not None:
      raise CenterPoseError("--val-backgrounds needs --backgrounds")
    return Backgrounds()
  photos = _photos(folder)
  if val_folder is not None:
    return Backgrounds(train=tuple(photos), val=tuple(_photos(val_folder)))
  if len(photos) < 2:
    raise CenterPoseError(f"{folder}: needs at least 2 photos, one held out for validation "
                          "(or give --val-backgrounds)")
  held_out = set(photos[VAL_PHOTO_EVERY - 1::VAL_PHOTO_EVERY]) or {photos[-1]}
  return Backgrounds(train=tuple(path for path in photos if path not in held_out), val=tuple(sorted(held_out)))


@functools.lru_cache(maxsize=32)
def _read_photo(path, max_side) -> np.ndarray:
  """[h, w, 3] uint8 RGB of a photo, downscaled to at most `max_side` pixels."""
  image = cv2.imread(path, cv2.IMREAD_COLOR)
  if image is None:
    raise CenterPoseError(f"{path}: could not read the background photo")
  scale = max_side / max(image.shape[:2])
  if scale < 1:
    image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
  return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _photo_crop(rng, photos, height, width) -> np.ndarray:
  """[H, W, 3] linear RGB: a random crop (50-100% of the photo, the frame's aspect) of a random photo, maybe flipped."""
  photo = _read_photo(photos[rng.integers(len(photos))], 2 * max(height, width))
  rows, cols = photo.shape[:2]
  fraction = rng.uniform(0.5, 1.0)
  crop_w = min(cols, rows * width / height) * fraction
  crop_h = crop_w * height / width
  x, y = rng.uniform(0, cols - crop_w), rng.uniform(0, rows - crop_h)
  crop = photo[int(y):int(y + crop_h) or 1, int(x):int(x + crop_w) or 1]
  crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
  if rng.random() < 0.5:
    crop = crop[:, ::-1]
  return object_mesh.srgb_to_linear(crop / 255.0)


def _uniform(rng, pair) -> float:
  return float(rng.uniform(pair[0], pair[1]))


def _tint(rng, amount) -> np.ndarray:
  return 1.0 + rng.uniform(-amount, amount, 3)


def _direction(elevation, azimuth) -> np.ndarray:
  """[3] unit vector at `elevation` above the ground plane and `azimuth` from +z towards +x (radians)."""
  return np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])


def _jittered(rng, parts, options) -> list:
  """The object's parts with the frame's colour gain and roughness offset."""
  gain = _tint(rng, options.colour_jitter).astype(np.float32)
  roughness = rng.uniform(-options.roughness_jitter, options.roughness_jitter)
  return [dataclasses.replace(part, base_colour=part.base_colour * gain,
                              roughness=float(np.clip(part.roughness + roughness, 0.0, 1.0))) for part in parts]


def _textured_part(rng, mesh, texture_image, axes, tile) -> object_mesh.Part:
  """A `Part` of a trimesh mesh (world frame) with `texture_image` planar-mapped along `axes` [3, 2], repeating
  every `tile` metres."""
  vertices = np.asarray(mesh.vertices, np.float64)
  return object_mesh.Part(
      vertices=vertices.astype(np.float32), faces=np.asarray(mesh.faces, np.uint32),
      normals=np.asarray(mesh.vertex_normals, np.float32), uv=(vertices @ axes / tile).astype(np.float32),
      texture=texture_image, vertex_colours=None, face_colours=None, base_colour=np.ones(3, np.float32),
      roughness=float(rng.uniform(0.2, 1.0)), metallic=float(rng.random() < 0.15))


def _primitive(rng, size):
  """A random trimesh primitive (box, sphere, cylinder, cone or capsule) about `size` metres across, centred."""
  import trimesh  # pylint: disable=import-outside-toplevel

  half = size / 2
  kind = rng.integers(5)
  if kind == 0:
    return trimesh.creation.box(extents=size * rng.uniform(0.4, 1.0, 3))
  if kind == 1:
    return trimesh.creation.icosphere(subdivisions=2, radius=half)
  if kind == 2:
    return trimesh.creation.cylinder(radius=half * rng.uniform(0.3, 1.0), height=size, sections=24)
  if kind == 3:
    return trimesh.creation.cone(radius=half, height=size, sections=24)
  return trimesh.creation.capsule(height=size * 0.6, radius=half * rng.uniform(0.3, 0.6), count=(12, 12))


def _placed(mesh, rotation, position):
  transform = np.eye(4)
  transform[:3, :3], transform[:3, 3] = rotation, position
  return mesh.copy().apply_transform(transform)


def _distractor(rng, radius, footprint):
  """A primitive standing on the ground (y = 0) outside the object's footprint circle (metres)."""
  size = radius * rng.uniform(0.4, 1.4)
  mesh = _placed(_primitive(rng, size), geometry.rotation_about_y(rng.uniform(0, 2 * np.pi))[:3, :3], np.zeros(3))
  reach = footprint + 0.5 * size * np.sqrt(2) + radius * rng.uniform(0.1, 2.5)
  angle = rng.uniform(0, 2 * np.pi)
  mesh.apply_translation([reach * np.cos(angle), -mesh.vertices[:, 1].min(), reach * np.sin(angle)])
  return mesh


def _occluder(rng, options, radius, object_size, object_centre, camera_centre):
  """A primitive between the camera and a random point of the object, or None when none fits clear of it."""
  from scipy.spatial.transform import Rotation  # pylint: disable=import-outside-toplevel

  for _ in range(_ATTEMPTS):
    target = object_centre + rng.uniform(-0.4, 0.4, 3) * object_size
    along = rng.uniform(0.4, 0.75)
    centre = camera_centre + along * (target - camera_centre)
    size = 2 * _uniform(rng, options.occluder_size) * along * radius
    if np.linalg.norm(centre - object_centre) > radius + size:
      rotation = Rotation.random(random_state=int(rng.integers(2**31))).as_matrix()
      return _placed(_primitive(rng, size), rotation, centre)
  return None


def _ground(rng, options, texture_image, radius, extent) -> object_mesh.Part:
  """A square ground plane (y = 0) of half-side `extent` metres; its texture, turned by a random angle, repeats
  every `options.ground_tile` object radii."""
  import trimesh  # pylint: disable=import-outside-toplevel

  quad = trimesh.Trimesh(vertices=[[-extent, 0, -extent], [-extent, 0, extent], [extent, 0, extent],
                                   [extent, 0, -extent]], faces=[[0, 1, 2], [0, 2, 3]], process=False)
  angle = rng.uniform(0, 2 * np.pi)
  axes = np.array([[np.cos(angle), np.sin(angle)], [0.0, 0.0], [-np.sin(angle), np.cos(angle)]])
  part = _textured_part(rng, quad, texture_image, axes, radius * _uniform(rng, options.ground_tile))
  return dataclasses.replace(part, metallic=0.0)


@dataclasses.dataclass
class Frame:
  """One sampled frame: the renderer's scene and what is done to its image afterwards.

  Attributes:
    scene: the `mitsuba_render.Scene`.
    instance: the object as a `synthetic_render.Instance` (its box and pose in the world), for the labels.
    background: [H, W, 3] linear RGB behind the rendered surfaces.
    exposure: EV added to the automatic exposure.
    blur: Gaussian blur sigma, pixels (0: none).
    noise: Gaussian noise sigma, fraction of full scale.
  """
  scene: mitsuba_render.Scene
  instance: synthetic_render.Instance
  background: np.ndarray
  exposure: float
  blur: float
  noise: float


def _camera(rng, options, model, centre):
  """(focal, world_to_camera, camera centre) framing the object as `options` asks, its centre inside the image."""
  width, height = options.width, options.height
  for _ in range(_ATTEMPTS):
    focal = _uniform(rng, options.focal) * max(width, height)
    half_angle = np.arctan(_uniform(rng, options.span) * min(width, height) / 2 / focal)
    distance = model.radius / np.sin(half_angle)
    direction = _direction(np.deg2rad(_uniform(rng, options.elevation)), np.deg2rad(_uniform(rng, options.azimuth)))
    camera_centre = centre + distance * direction
    roll = np.deg2rad(_uniform(rng, options.roll))
    straight = synthetic.look_at(camera_centre, centre, roll)
    # Aiming off the centre by (dx, dy) pixels moves the object the other way by about that much.
    offset = rng.uniform(-options.aim, options.aim, 2) * np.array([width, height]) / 2
    target = centre + (straight[0, :3] * offset[0] + straight[1, :3] * offset[1]) * distance / focal
    world_to_camera = synthetic.look_at(camera_centre, target, roll)
    k = geometry.camera_matrix(focal, focal, (width - 1) / 2, (height - 1) / 2)
    projected = geometry.project_with_intrinsics(geometry.apply_transform(world_to_camera, centre[None]), k)[0]
    if 0 <= projected[0] <= width - 1 and 0 <= projected[1] <= height - 1:
      return focal, world_to_camera, camera_centre
  raise CenterPoseError("could not frame the object with its centre in the image; narrow --aim or --roll")


def _lights(rng, options, centre, radius) -> list:
  """The frame's `mitsuba_render.Light`s: a sun (unless its irradiance is drawn as 0) and 0-2 point lights."""
  sun = _uniform(rng, options.sun)
  lights = []
  if sun > 0:
    towards_sun = _direction(np.deg2rad(_uniform(rng, options.sun_elevation)), rng.uniform(0, 2 * np.pi))
    lights.append(mitsuba_render.Light("directional", -towards_sun, sun * _tint(rng, options.light_tint)))
  for _ in range(int(rng.integers(options.point_lights[0], options.point_lights[1] + 1))):
    reach = radius * rng.uniform(2.0, 6.0)
    position = centre + reach * _direction(np.deg2rad(rng.uniform(15, 80)), rng.uniform(0, 2 * np.pi))
    power = _uniform(rng, options.point_light_power) * reach**2 * _tint(rng, options.light_tint)
    lights.append(mitsuba_render.Light("point", position, power))
  return lights


def sample_frame(rng, model, options, photos=()) -> Frame:
  """Draws one frame of `model` (an `object_mesh.ObjectModel`) from the ranges of `options`.

  Args:
    rng: numpy Generator; the frame is a function of its state.
    model: the object.
    options: `RenderOptions`.
    photos: background photo paths for this split (empty: procedural backgrounds).
  """
  width, height = options.width, options.height
  centre = np.array([0.0, model.size[1] / 2, 0.0])
  instance = synthetic_render.Instance(parts=[], size=model.size, rotation=np.eye(3), translation=centre)
  focal, world_to_camera, camera_centre = _camera(rng, options, model, centre)
  radius = model.radius

  def texture_image(side=256):
    if photos and rng.random() < 0.5:
      return _photo_crop(rng, photos, side, side)
    return procedural_textures.texture(rng, side, side, contrast=_uniform(rng, options.texture_contrast))

  props = []
  if rng.random() < options.ground_probability:
    extent = 50 * max(radius, np.linalg.norm(camera_centre))
    props.append(_ground(rng, options, texture_image(), radius, extent))
  footprint = 0.5 * np.hypot(model.size[0], model.size[2])
  for _ in range(int(rng.integers(options.distractors[0], options.distractors[1] + 1))):
    props.append(_textured_part(rng, _distractor(rng, radius, footprint), texture_image(64),
                                np.linalg.qr(rng.normal(size=(3, 3)))[0][:, :2], radius * rng.uniform(0.2, 1.0)))
  if rng.random() < options.occluder_probability:
    occluder = _occluder(rng, options, radius, model.size, centre, camera_centre)
    if occluder is not None:
      props.append(_textured_part(rng, occluder, texture_image(64), np.linalg.qr(rng.normal(size=(3, 3)))[0][:, :2],
                                  radius * rng.uniform(0.2, 1.0)))
  object_to_world = np.eye(4)
  object_to_world[:3, 3] = centre
  scene = mitsuba_render.Scene(
      width=width, height=height, focal=focal, world_to_camera=world_to_camera,
      object_parts=_jittered(rng, model.parts, options), object_to_world=object_to_world, props=props,
      environment=_uniform(rng, options.sky) * _tint(rng, options.light_tint),
      lights=_lights(rng, options, centre, radius), samples=options.samples, max_depth=options.max_depth,
      seed=int(rng.integers(2**31)))
  if photos:
    background = _photo_crop(rng, photos, height, width)
  else:
    background = procedural_textures.background(rng, height, width, _uniform(rng, options.texture_contrast))
  scale = max(width, height) / 512
  return Frame(scene=scene, instance=instance, background=background, exposure=_uniform(rng, options.exposure),
               blur=_uniform(rng, options.blur) * scale, noise=_uniform(rng, options.noise))


def develop(frame: Frame, rgba, rng) -> np.ndarray:
  """[H, W, 3] uint8 BGR photo of a rendering: automatic exposure of the rendered surfaces (mean luminance 0.18)
  shifted by the frame's EV, composited over the background, blurred, sRGB-encoded, noised and quantised."""
  rgb, alpha = rgba[..., :3], rgba[..., 3:4]
  luminance = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
  covered = float(alpha.sum())
  mean = float(luminance.sum()) / covered if covered > 0 else 0.18
  gain = np.clip(0.18 / max(mean, 1e-4), 0.05, 20.0)
  image = (rgb * gain + (1.0 - alpha) * frame.background) * 2.0**frame.exposure
  if frame.blur > 0.3:
    image = cv2.GaussianBlur(image, (0, 0), frame.blur)
  image = object_mesh.linear_to_srgb(image)
  if frame.noise > 0:
    image = image + rng.normal(0.0, frame.noise, image.shape).astype(np.float32)
  return cv2.cvtColor(np.clip(np.round(image * 255), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)


def render_frame(rng, model, options, name, photos=()):
  """Samples, renders and labels one frame.

  Returns:
    (image_bgr, annotation, rendering): uint8 [H, W, 3], the CenterPose JSON dict (one object named `name`), and
    the `mitsuba_render.Rendering` (its object mask and visibility).
  """
  frame = sample_frame(rng, model, options, photos)
  rendering = mitsuba_render.render(frame.scene, geometry.cuboid_vertices(model.size)[1:])
  image = develop(frame, rendering.rgba, rng)
  annotation = synthetic.frame_annotation(name, [frame.instance], [rendering.visibility], frame.scene.camera_k,
                                          frame.scene.world_to_camera, options.width, options.height)
  return image, annotation, rendering


# Per worker process: what `_init_worker` loaded.
_WORKER = {}


def _init_worker(mesh, mesh_options, options, name, backgrounds, seed, variant, threads):
  """Chooses Mitsuba's variant and loads the mesh once per rendering process."""
  mitsuba_render.select_variant(variant, threads)
  _WORKER.update(model=object_mesh.load_object(mesh, **mesh_options), options=options, name=name,
                 backgrounds=backgrounds, seed=seed)


def _write_atomically(path, data: bytes):
  temporary = path.with_name(path.name + ".partial")
  temporary.write_bytes(data)
  os.replace(temporary, path)


def _write_frame(task) -> Optional[float]:
  """Renders frame (folder, split, index) unless its PNG and JSON exist; returns its visibility, or None."""
  folder, split, index = task
  image_path = pathlib.Path(folder) / f"{index:06d}{synthetic.IMAGE_EXTENSION}"
  json_path = image_path.with_suffix(".json")
  if image_path.exists() and json_path.exists():
    return None
  rng = synthetic.frame_rng(_WORKER["seed"], split, index)
  image, annotation, _ = render_frame(rng, _WORKER["model"], _WORKER["options"], _WORKER["name"],
                                      _WORKER["backgrounds"].for_split(split))
  ok, encoded = cv2.imencode(synthetic.IMAGE_EXTENSION, image)
  if not ok:
    raise OSError(f"could not encode {image_path}")
  _write_atomically(image_path, encoded.tobytes())
  _write_atomically(json_path, json.dumps(annotation, indent=1).encode())  # last: a pair exists once complete
  return annotation["objects"][0]["visibility"]


def generate_dataset(out_dir, mesh, num_train, num_val, seed=0, options=RenderOptions(), *, unit="m", up="+y",
                     front="+z", name=None, num_symmetry=1, backgrounds=Backgrounds(), variant="auto",
                     workers=1, progress=True) -> dict:
  """Renders `out_dir/train/` and `out_dir/val/` as NNNNNN.png + NNNNNN.json pairs; resumable.

  Frames whose PNG and JSON both exist are kept, so a rerun renders only the missing ones; a folder made with other
  settings (its `synthetic.SETTINGS_FILE` differs) or holding other images is refused. The dataset is a function of
  the settings and (seed, split, frame index), whatever the number of workers.

  Args:
    out_dir: output folder (created).
    mesh: the object's mesh file (`object_mesh.load_object` reads it with `unit`, `up` and `front`).
    num_train, num_val: frames per split.
    seed: random seed.
    options: `RenderOptions`.
    unit, up, front: the mesh file's length unit and axes.
    name: the label's class name (default: the mesh file's stem).
    num_symmetry: the object's rotational symmetry order about its up axis, recorded for training
      (`dataset.num_symmetry`).
    backgrounds: `Backgrounds` photos per split (none: procedural).
    variant: Mitsuba variant (`mitsuba_render.VARIANTS`).
    workers: rendering processes; each renders with (CPU cores / workers) threads.
    progress: show a tqdm progress bar.

  Returns:
    Summary: the object's box size (metres: check the unit and axes), per split the number of images, rendered
    and skipped frames; seconds, frames per second, the variant, mean visibility and the fraction of objects
    less than 95% visible.
  """
  mesh = pathlib.Path(mesh)
  name = name or mesh.stem
  mesh_options = {"unit": unit, "up": up, "front": front}
  model = object_mesh.load_object(mesh, **mesh_options)  # checks the mesh before anything is written
  variant = mitsuba_render.resolve_variant(variant)
  if num_symmetry < 1:
    raise CenterPoseError(f"num_symmetry must be >= 1, got {num_symmetry}")
  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  settings = {"generator": "render_object_dataset", "mesh": mesh.name, "mesh_sha256": model.source_sha256,
              **mesh_options, "name": name, "num_symmetry": num_symmetry, "seed": seed, "variant": variant,
              "backgrounds": {split: [pathlib.Path(path).name for path in backgrounds.for_split(split)]
                              for split in SPLITS},
              "options": dataclasses.asdict(options)}
  try:
    synthetic.check_settings(out_dir, json.loads(json.dumps(settings)))
  except ValueError as error:
    raise CenterPoseError(str(error)) from None
  tasks = []
  for split, count in zip(SPLITS, (num_train, num_val)):
    folder = out_dir / split
    folder.mkdir(parents=True, exist_ok=True)
    try:
      synthetic.check_split_folder(folder, count)
    except ValueError as error:
      raise CenterPoseError(str(error)) from None
    tasks += [(str(folder), split, index) for index in range(count)]
  workers = max(1, min(int(workers), len(tasks) or 1))
  init_args = (str(mesh), mesh_options, options, name, backgrounds, seed, variant,
               max(1, (os.cpu_count() or 1) // workers))
  start = time.perf_counter()
  bar = tqdm.tqdm(total=len(tasks), desc=f"rendering {name}", unit="frame", disable=not progress)
  if workers > 1:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                initargs=init_args) as pool:
      results = []
      for result in pool.map(_write_frame, tasks):
        results.append(result)
        bar.update()
  else:
    _init_worker(*init_args)
    results = []
    for task in tasks:
      results.append(_write_frame(task))
      bar.update()
  bar.close()
  seconds = time.perf_counter() - start
  summary = {"name": name, "box_size_m": model.size.round(5).tolist(), "image_size": [options.width, options.height],
             "seed": seed, "variant": variant, "workers": workers, "splits": {}}
  for split, count in zip(SPLITS, (num_train, num_val)):
    rendered = sum(1 for task, result in zip(tasks, results) if task[1] == split and result is not None)
    summary["splits"][split] = {"images": count, "rendered": rendered, "skipped": count - rendered}
  visibility = np.array([result for result in results if result is not None])
  summary["seconds"] = round(seconds, 2)
  summary["frames_per_second"] = round(len(visibility) / seconds, 3) if len(visibility) else 0.0
  if len(visibility):
    summary["mean_visibility"] = round(float(visibility.mean()), 4)
    summary["occluded_fraction"] = round(float(np.mean(visibility < 0.95)), 4)
  summary["train_with"] = f"dataset.num_symmetry = {num_symmetry}"
  return summary
