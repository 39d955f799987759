"""A user's 3D model as render-ready parts in the CenterPose object frame (x right, y up, z front, metres).

`load_object` reads OBJ, PLY, GLB, GLTF or STL with trimesh (a multi-material file gives one part per
material), scales it to metres, turns the file's up and front axes onto +y and +z, and centres the tight
axis-aligned bounding box at the origin: that box is the labelled cuboid (`ObjectModel.size`).

Colours are linear RGB in [0, 1] (sRGB textures and colours are decoded on loading). Texture coordinates
follow the image's row order: v = 0 is the top row of `Part.texture`.
"""

import dataclasses
import hashlib
import pathlib
from typing import Optional

import cv2
import numpy as np

from centerpose_jax.errors import CenterPoseError

MESH_EXTENSIONS = (".obj", ".ply", ".glb", ".gltf", ".stl")
# Metres per file unit.
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
AXES = ("+x", "-x", "+y", "-y", "+z", "-z")
MAX_TEXTURE_SIDE = 1024  # larger textures are downscaled on loading (rendering at 512 px needs no more)
_DEFAULT_ROUGHNESS = 0.6


@dataclasses.dataclass
class Part:
  """One material's triangles.

  Attributes:
    vertices: [N, 3] float32, object frame, metres.
    faces: [F, 3] uint32 vertex indices, counter-clockwise seen from outside.
    normals: [N, 3] float32 unit vertex normals, object frame.
    uv: [N, 2] float32 texture coordinates (v = 0 at the texture's top row), or None.
    texture: [h, w, 3] float32 linear RGB base colour texture, or None.
    vertex_colours: [N, 3] float32 linear RGB, or None.
    face_colours: [F, 3] float32 linear RGB, or None.
    base_colour: [3] linear RGB factor multiplying the texture or vertex/face colours (the colour when there is
      none).
    roughness, metallic: principled-material parameters in [0, 1].
  """
  vertices: np.ndarray
  faces: np.ndarray
  normals: np.ndarray
  uv: Optional[np.ndarray]
  texture: Optional[np.ndarray]
  vertex_colours: Optional[np.ndarray]
  face_colours: Optional[np.ndarray]
  base_colour: np.ndarray
  roughness: float
  metallic: float


@dataclasses.dataclass
class ObjectModel:
  """A loaded object: its parts in the object frame and its labelled box.

  Attributes:
    parts: `Part`s, object frame (origin at the box centre, y up, z front), metres.
    size: [3] float64 tight box size (x width, y height, z depth), metres.
    source_sha256: hex digest of the mesh file's bytes (a dataset records which model it shows).
  """
  parts: list
  size: np.ndarray
  source_sha256: str

  @property
  def radius(self) -> float:
    """Half the box diagonal, metres: the radius of the sphere that holds the object."""
    return float(np.linalg.norm(self.size) / 2)


def srgb_to_linear(values) -> np.ndarray:
  """sRGB-encoded values in [0, 1] -> linear, float32 (the IEC 61966-2-1 curve)."""
  values = np.asarray(values, np.float32)
  return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(values) -> np.ndarray:
  """Linear values in [0, 1] -> sRGB-encoded, float32 (inverse of `srgb_to_linear`)."""
  values = np.clip(np.asarray(values, np.float32), 0.0, 1.0)
  return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055).astype(np.float32)


def axes_rotation(up: str, front: str) -> np.ndarray:
  """[3, 3] rotation taking file coordinates to the object frame: the file's `up` axis to +y, `front` to +z.

  Axes are named "+x", "-x", "+y", "-y", "+z", "-z" and must be perpendicular.
  """
  def unit(name):
    if name not in AXES:
      raise CenterPoseError(f"axis {name!r}: expected one of {', '.join(AXES)}")
    vector = np.zeros(3)
    vector["xyz".index(name[1])] = 1.0 if name[0] == "+" else -1.0
    return vector
  up_vector, front_vector = unit(up), unit(front)
  if abs(up_vector @ front_vector) > 0:
    raise CenterPoseError(f"up axis {up} and front axis {front} must be perpendicular")
  # Rows are the object axes x = y cross z, y = up, z = front, written in file coordinates.
  return np.stack([np.cross(up_vector, front_vector), up_vector, front_vector])


def _image_to_linear(image) -> np.ndarray:
  """[h, w, 3] float32 linear RGB of a PIL image (or array), downscaled to at most `MAX_TEXTURE_SIDE`."""
  array = np.asarray(image.convert("RGB") if hasattr(image, "convert") else image)
  if array.ndim == 2:
    array = np.repeat(array[..., None], 3, axis=2)
  array = array[..., :3]
  side = max(array.shape[:2])
  if side > MAX_TEXTURE_SIDE:
    scale = MAX_TEXTURE_SIDE / side
    array = cv2.resize(array, (max(1, round(array.shape[1] * scale)), max(1, round(array.shape[0] * scale))),
                       interpolation=cv2.INTER_AREA)
  if array.dtype == np.uint8:
    array = array.astype(np.float32) / 255.0
  return srgb_to_linear(array)


def _rgb_factor(colour) -> np.ndarray:
  """[3] linear RGB of a trimesh colour (uint8 sRGB 0-255, or floats already linear as glTF factors)."""
  colour = np.asarray(colour)
  if colour.dtype == np.uint8:
    return srgb_to_linear(colour[:3] / 255.0)
  return np.asarray(colour[:3], np.float32)


def _part(mesh, rotation, scale) -> Part:
  """The `Part` of one trimesh.Trimesh, its vertices mapped by `rotation` and `scale` (not yet centred)."""
  import trimesh  # pylint: disable=import-outside-toplevel

  visual = mesh.visual
  uv = texture = vertex_colours = face_colours = None
  base_colour, roughness, metallic = np.full(3, 0.8, np.float32), _DEFAULT_ROUGHNESS, 0.0
  if isinstance(visual, trimesh.visual.TextureVisuals):
    material = visual.material
    if isinstance(material, trimesh.visual.material.SimpleMaterial):
      material = material.to_pbr()
    if material is not None:
      if material.baseColorFactor is not None:
        base_colour = _rgb_factor(material.baseColorFactor)
      if material.roughnessFactor is not None:
        roughness = float(material.roughnessFactor)
      if material.metallicFactor is not None:
        metallic = float(material.metallicFactor)
      if material.baseColorTexture is not None and visual.uv is not None and len(visual.uv) == len(mesh.vertices):
        texture = _image_to_linear(material.baseColorTexture)
        uv = np.asarray(visual.uv, np.float32).copy()
        uv[:, 1] = 1.0 - uv[:, 1]  # trimesh's v runs up from the bottom row
  elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.defined:
    if visual.kind == "vertex":
      vertex_colours = srgb_to_linear(np.asarray(visual.vertex_colors)[:, :3] / 255.0)
    elif visual.kind == "face":
      face_colours = srgb_to_linear(np.asarray(visual.face_colors)[:, :3] / 255.0)
    if vertex_colours is not None or face_colours is not None:
      base_colour = np.ones(3, np.float32)
  vertices = (np.asarray(mesh.vertices, np.float64) * scale) @ rotation.T
  normals = np.asarray(mesh.vertex_normals, np.float64) @ rotation.T
  return Part(vertices=vertices.astype(np.float32), faces=np.asarray(mesh.faces, np.uint32),
              normals=normals.astype(np.float32), uv=uv, texture=texture, vertex_colours=vertex_colours,
              face_colours=face_colours, base_colour=base_colour, roughness=float(np.clip(roughness, 0, 1)),
              metallic=float(np.clip(metallic, 0, 1)))


def load_object(path, unit="m", up="+y", front="+z") -> ObjectModel:
  """Loads a mesh file as an `ObjectModel` in the object frame.

  Args:
    path: an OBJ (with its MTL and textures), PLY, GLB, GLTF or STL file.
    unit: the file's length unit, a key of `UNITS` or a number of metres per unit.
    up, front: the file's axes that become the object's y ("up") and z ("front") axes, e.g. "+z" and "-y" for a
      z-up CAD export.

  Returns:
    The `ObjectModel`, its box centred at the origin.

  Raises:
    CenterPoseError: missing or unreadable file, unknown unit or axes, no triangles.
  """
  import trimesh  # pylint: disable=import-outside-toplevel

  path = pathlib.Path(path)
  if path.suffix.lower() not in MESH_EXTENSIONS:
    raise CenterPoseError(f"{path}: unsupported mesh format; expected one of {', '.join(MESH_EXTENSIONS)}")
  if not path.is_file():
    raise CenterPoseError(f"{path}: no such mesh file")
  try:
    scale = float(UNITS[unit]) if unit in UNITS else float(unit)
  except ValueError:
    raise CenterPoseError(f"unit {unit!r}: expected one of {', '.join(UNITS)} or metres per unit") from None
  if not scale > 0:
    raise CenterPoseError(f"unit {unit!r}: metres per unit must be positive")
  rotation = axes_rotation(up, front)
  try:
    scene = trimesh.load(str(path), force="scene", process=False)
  except Exception as error:  # trimesh raises many types for bad files
    raise CenterPoseError(f"{path}: could not read the mesh ({error})") from error
  parts = []
  for node in scene.graph.nodes_geometry:
    transform, name = scene.graph[node]
    geometry = scene.geometry[name]
    if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
      continue
    geometry = geometry.copy()
    geometry.apply_transform(transform)
    parts.append(_part(geometry, rotation, scale))
  if not parts:
    raise CenterPoseError(f"{path}: the file holds no triangles")
  points = np.concatenate([part.vertices for part in parts]).astype(np.float64)
  low, high = points.min(axis=0), points.max(axis=0)
  size = high - low
  if not (size > 0).all():
    raise CenterPoseError(f"{path}: the mesh is flat (box size {size.tolist()} m); a cuboid needs three extents")
  centre = ((low + high) / 2).astype(np.float32)
  for part in parts:
    part.vertices = part.vertices - centre
  return ObjectModel(parts=parts, size=size, source_sha256=hashlib.sha256(path.read_bytes()).hexdigest())

