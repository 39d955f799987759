"""Photo-like frames of a scene of textured triangle meshes, path traced by Mitsuba 3 on the CPU.

The scene is given in a world frame with y up (the ground plane, if any, at y = 0) and a pinhole camera in the
OpenCV convention: `world_to_camera` maps world points to the OpenCV camera frame (x right, y down, z forward)
and the intrinsics have fx = fy, the principal point at the image centre ((W - 1) / 2, (H - 1) / 2 in OpenCV
pixels, whose centres are at integer coordinates). Mitsuba's camera looks along +z with x left and y up, so
its camera-to-world transform is the OpenCV one turned half a turn about z.

`render` gives the linear RGB image with its alpha (coverage by any surface: pixels with alpha < 1 show the
background that the caller composites behind) and the target object's mask: the pixels whose centre ray hits
the object first, from two depth passes (whole scene and object alone) at exact pixel centres. The visible
fraction divides that mask's area by the area of the object's whole silhouette, taken on a canvas enlarged
until it holds the object's projected box, so the part cut by the image border counts as hidden.

Mitsuba is imported on first use; `select_variant` chooses its CPU variant once per process.
"""

import dataclasses
import os
import pathlib
import sys
from typing import Optional

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.errors import CenterPoseError

VARIANTS = ("auto", "scalar_rgb", "llvm_ad_rgb")
_OPENCV_TO_MITSUBA_CAMERA = np.diag([-1.0, -1.0, 1.0, 1.0])  # half a turn about the viewing axis
_MAX_CANVAS_MARGIN = 2.0  # the enlarged canvas adds at most this many image sizes on each side
_DEPTH_TOLERANCE = 1e-3  # relative: a pixel shows the object when the scene's depth is the object's own


@dataclasses.dataclass
class Light:
  """A light source, world frame.

  Attributes:
    kind: "directional" (a sun: `vector` is the direction light travels) or "point" (`vector` is its position).
    vector: [3] direction (unit) or position (metres).
    power: [3] linear RGB irradiance (directional, W/m^2 on a surface facing it) or intensity (point, W/sr).
  """
  kind: str
  vector: np.ndarray
  power: np.ndarray


@dataclasses.dataclass
class Scene:
  """Everything one frame shows.

  Attributes:
    width, height: image size in pixels.
    focal: fx = fy in pixels.
    world_to_camera: [4, 4] world -> OpenCV camera transform.
    object_parts: the labelled object's `object_mesh.Part`s, object frame.
    object_to_world: [4, 4] its pose.
    props: other `object_mesh.Part`s (ground, distractors, occluders), world frame.
    environment: [3] linear RGB radiance of the uniform sky light (invisible: the caller composites a background).
    lights: `Light`s.
    samples: path-tracing samples per pixel.
    max_depth: longest light path (2 = direct light only, 3 = one bounce of indirect light, ...).
    seed: the renderer's sample seed.
  """
  width: int
  height: int
  focal: float
  world_to_camera: np.ndarray
  object_parts: list
  object_to_world: np.ndarray
  props: list
  environment: np.ndarray
  lights: list
  samples: int = 16
  max_depth: int = 3
  seed: int = 0

  @property
  def camera_k(self) -> np.ndarray:
    """[3, 3] the intrinsics, OpenCV pixels."""
    return geometry.camera_matrix(self.focal, self.focal, (self.width - 1) / 2, (self.height - 1) / 2)


@dataclasses.dataclass
class Rendering:
  """What `render` returns.

  Attributes:
    rgba: [H, W, 4] float32 linear RGB premultiplied by alpha, and alpha (surface coverage) in [0, 1].
    object_mask: [H, W] bool, the pixels where the object is the first surface seen.
    silhouette_pixels: pixels of the object's whole silhouette alone, inside and outside the image.
    visibility: object_mask's area / silhouette_pixels, in [0, 1] (0 when the silhouette is empty).
  """
  rgba: np.ndarray
  object_mask: np.ndarray
  silhouette_pixels: int
  visibility: float


def _bundled_llvm() -> Optional[str]:
  """Path of a libLLVM shipped inside this Python environment (the karellen-llvm-core wheel), or None."""
  path = pathlib.Path(sys.prefix) / "lib" / "libLLVM.so"
  return str(path) if path.exists() else None


def resolve_variant(variant="auto") -> str:
  """The Mitsuba variant `variant` stands for: "auto" is llvm_ad_rgb when an LLVM library is known, else scalar_rgb.

  LLVM counts as known when DRJIT_LIBLLVM_PATH is set or the environment holds the karellen-llvm-core wheel's
  libLLVM (a system LLVM is not probed: an old one aborts the process on its first kernel).
  """
  if variant not in VARIANTS:
    raise CenterPoseError(f"renderer variant {variant!r}: expected one of {', '.join(VARIANTS)}")
  if variant != "auto":
    return variant
  return "llvm_ad_rgb" if os.environ.get("DRJIT_LIBLLVM_PATH") or _bundled_llvm() else "scalar_rgb"


def select_variant(variant="auto", threads=0):
  """Sets Mitsuba's variant for this process and returns the mitsuba module.

  Args:
    variant: one of `VARIANTS` (see `resolve_variant`).
    threads: rendering threads (0: one per CPU core).
  """
  variant = resolve_variant(variant)
  if not os.environ.get("DRJIT_LIBLLVM_PATH") and _bundled_llvm():
    # Before Dr.Jit's first import, whatever the variant: Dr.Jit binds its LLVM once per process.
    os.environ["DRJIT_LIBLLVM_PATH"] = _bundled_llvm()
  import drjit  # pylint: disable=import-outside-toplevel
  import mitsuba  # pylint: disable=import-outside-toplevel
  try:
    mitsuba.set_variant(variant)
    if variant.startswith("llvm"):
      drjit.llvm.Float([0.0])  # fails now, not mid-render, when no LLVM library loads
  except (ImportError, AttributeError) as error:
    raise CenterPoseError(f"Mitsuba variant {variant} is unavailable ({error}); use --variant scalar_rgb, or "
                          "pip install karellen-llvm-core for the faster llvm_ad_rgb") from error
  if threads:
    drjit.set_thread_count(int(threads))
  return mitsuba


def _transform(mi, matrix):
  return mi.ScalarTransform4f(np.asarray(matrix, np.float64).tolist())


def _bitmap_texture(mi, image):
  """A repeating Mitsuba bitmap texture of a linear float [h, w, 3] image (raw: no colour-space conversion)."""
  return {"type": "bitmap", "bitmap": mi.Bitmap(np.ascontiguousarray(image, np.float32)), "raw": True,
          "filter_type": "bilinear", "wrap_mode": "repeat"}


def _mesh(mi, name, part, to_world=None):
  """A Mitsuba mesh of an `object_mesh.Part` with a principled material, its vertices mapped by `to_world`."""
  vertices, normals = part.vertices.astype(np.float64), part.normals.astype(np.float64)
  if to_world is not None:
    vertices = geometry.apply_transform(to_world, vertices)
    normals = normals @ np.asarray(to_world)[:3, :3].T
  if part.texture is not None and part.uv is not None:
    base_colour = _bitmap_texture(mi, part.texture * part.base_colour)
  elif part.vertex_colours is not None or part.face_colours is not None:
    base_colour = {"type": "mesh_attribute",
                   "name": "vertex_color" if part.vertex_colours is not None else "face_color"}
  else:
    base_colour = {"type": "rgb", "value": np.clip(part.base_colour, 0, 1).tolist()}
  props = mi.Properties()
  props["bsdf"] = mi.load_dict({"type": "principled", "base_color": base_colour,
                                "roughness": float(np.clip(part.roughness, 0.02, 1.0)),
                                "metallic": float(part.metallic)})
  has_uv = part.uv is not None
  mesh = mi.Mesh(name, len(vertices), len(part.faces), props=props, has_vertex_normals=True,
                 has_vertex_texcoords=has_uv)
  params = mi.traverse(mesh)
  params["vertex_positions"] = vertices.astype(np.float32).ravel()
  params["vertex_normals"] = normals.astype(np.float32).ravel()
  params["faces"] = part.faces.astype(np.uint32).ravel()
  if has_uv:
    params["vertex_texcoords"] = part.uv.astype(np.float32).ravel()
  params.update()
  if part.vertex_colours is not None:
    mesh.add_attribute("vertex_color", 3, (part.vertex_colours * part.base_colour).astype(np.float32).ravel())
  elif part.face_colours is not None:
    mesh.add_attribute("face_color", 3, (part.face_colours * part.base_colour).astype(np.float32).ravel())
  return mesh


def _sensor(mi, scene, width, height, samples, jitter=True, film_format="rgba"):
  """A Mitsuba perspective camera of `scene` with a `width` x `height` film (same focal length, centred)."""
  camera_to_world = np.linalg.inv(scene.world_to_camera) @ _OPENCV_TO_MITSUBA_CAMERA
  sampler = ({"type": "independent", "sample_count": samples} if jitter else
             {"type": "stratified", "sample_count": 1, "jitter": False})  # one ray through each pixel centre
  return mi.load_dict({
      "type": "perspective", "fov_axis": "x", "fov": float(np.degrees(2 * np.arctan(width / (2 * scene.focal)))),
      "near_clip": 1e-3, "far_clip": 1e4, "to_world": _transform(mi, camera_to_world), "sampler": sampler,
      "film": {"type": "hdrfilm", "width": int(width), "height": int(height), "pixel_format": film_format,
               "rfilter": {"type": "gaussian"} if jitter else {"type": "box"}}})


def _scene(mi, scene, with_props):
  """The Mitsuba scene of the object (and, with `with_props`, the props and lights)."""
  content = {"type": "scene"}
  for index, part in enumerate(scene.object_parts):
    content[f"object_{index}"] = _mesh(mi, f"object_{index}", part, scene.object_to_world)
  if with_props:
    for index, part in enumerate(scene.props):
      content[f"prop_{index}"] = _mesh(mi, f"prop_{index}", part)
    content["sky"] = {"type": "constant", "radiance": {"type": "rgb", "value": np.asarray(scene.environment).tolist()}}
    for index, light in enumerate(scene.lights):
      power = {"type": "rgb", "value": np.asarray(light.power, np.float64).tolist()}
      if light.kind == "directional":
        content[f"light_{index}"] = {"type": "directional", "direction": np.asarray(light.vector).tolist(),
                                     "irradiance": power}
      else:
        content[f"light_{index}"] = {"type": "point", "position": np.asarray(light.vector).tolist(),
                                     "intensity": power}
  return mi.load_dict(content)


def _depth(mi, mitsuba_scene, sensor) -> np.ndarray:
  """[H, W] float32 distance to the first surface through each pixel centre (0 where nothing is hit)."""
  integrator = mi.load_dict({"type": "aov", "aovs": "depth:depth"})
  return np.array(mi.render(mitsuba_scene, sensor=sensor, integrator=integrator), np.float32)[..., -1]


def silhouette_margins(scene, points_object) -> tuple:
  """(mx, my) pixels to add on each side so the image holds the object points [N, 3] (object frame)."""
  points = geometry.apply_transform(scene.world_to_camera @ scene.object_to_world, points_object)
  pixels = geometry.project_with_intrinsics(points, scene.camera_k)
  margin_x = max(0.0, -pixels[:, 0].min() - 0.5, pixels[:, 0].max() + 0.5 - scene.width)
  margin_y = max(0.0, -pixels[:, 1].min() - 0.5, pixels[:, 1].max() + 0.5 - scene.height)
  return (int(np.ceil(min(margin_x, _MAX_CANVAS_MARGIN * scene.width))) + 1 if margin_x else 0,
          int(np.ceil(min(margin_y, _MAX_CANVAS_MARGIN * scene.height))) + 1 if margin_y else 0)


def render(scene: Scene, box_corners) -> Rendering:
  """Path traces `scene` and measures the object's visible mask.

  Args:
    scene: the `Scene` (Mitsuba's variant must have been chosen with `select_variant`).
    box_corners: [8, 3] the object's box corners, object frame (they bound the silhouette).

  Returns:
    The `Rendering`.
  """
  import mitsuba as mi  # pylint: disable=import-outside-toplevel

  full = _scene(mi, scene, with_props=True)
  beauty = _sensor(mi, scene, scene.width, scene.height, scene.samples)
  integrator = mi.load_dict({"type": "path", "max_depth": int(scene.max_depth), "hide_emitters": True})
  rgba = np.array(mi.render(full, sensor=beauty, integrator=integrator, seed=int(scene.seed)), np.float32)
  alone = _scene(mi, scene, with_props=False)
  centres = _sensor(mi, scene, scene.width, scene.height, 1, jitter=False, film_format="luminance")
  object_depth = _depth(mi, alone, centres)
  scene_depth = _depth(mi, full, centres)
  hit = object_depth > 0
  mask = hit & (np.abs(scene_depth - object_depth) <= _DEPTH_TOLERANCE * object_depth)
  margin_x, margin_y = silhouette_margins(scene, box_corners)
  if margin_x or margin_y:
    canvas = _sensor(mi, scene, scene.width + 2 * margin_x, scene.height + 2 * margin_y, 1, jitter=False,
                     film_format="luminance")
    silhouette = int(np.count_nonzero(_depth(mi, alone, canvas) > 0))
  else:
    silhouette = int(np.count_nonzero(hit))
  visible = int(np.count_nonzero(mask))
  return Rendering(rgba=rgba, object_mask=mask, silhouette_pixels=silhouette,
                   visibility=min(1.0, visible / silhouette) if silhouette else 0.0)
