"""A small z-buffer rasteriser for the synthetic dataset: flat-shaded convex parts over a ground plane.

Everything is in the OpenCV camera frame (x right, y down, z forward, metres) and OpenCV pixels (x = column,
y = row, pixel centres at integer coordinates), with a pinhole camera K and no distortion. The world frame
has y up and the ground plane at y = 0.

Each visible face is filled with `cv2.fillPoly` inside its pixel bounding box and kept where its exact plane
depth (from the pixel's ray) is nearer than the z-buffer, so occlusion between parts and objects is right
whatever their order. Decals are drawn only on pixels owned by their face. A dark line is drawn where the
visible face changes (except between the facets of a round part).
"""

import dataclasses

import cv2
import numpy as np

from centerpose_jax import geometry

_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point precision for vertex coordinates.


@dataclasses.dataclass
class Instance:
  """One object placed in the world.

  Attributes:
    parts: `synthetic_shapes.Part`s in the object frame (metres).
    size: [3] bounding box size (x, y, z), metres.
    rotation: [3, 3] object -> world rotation (about the world y axis for objects resting on the ground).
    translation: [3] the object frame's origin (its box centre) in world coordinates, metres.
  """
  parts: list
  size: np.ndarray
  rotation: np.ndarray
  translation: np.ndarray

  def to_camera(self, world_to_camera) -> np.ndarray:
    """[4, 4] object -> camera transform, given the [4, 4] world -> camera transform."""
    object_to_world = np.eye(4)
    object_to_world[:3, :3] = self.rotation
    object_to_world[:3, 3] = self.translation
    return world_to_camera @ object_to_world


@dataclasses.dataclass
class Style:
  """Lighting and background of one frame (colours are BGR in [0, 255]).

  Attributes:
    light_direction: [3] unit vector towards the light, world frame.
    ambient: fraction of a face's colour it keeps when facing away from the light.
    sky_top, sky_horizon: colours of the top image row and of the horizon, above the ground.
    ground_colours: [2, 3] the two alternating tile colours of the ground.
    tile_size: metres.
    fog_distance: metres; the ground fades to the horizon colour with exp(-distance / fog_distance).
    shadow_strength: darkening in [0, 1] of the ground right under an object.
    noise_sigma: standard deviation of the per-pixel Gaussian noise, colour units.
    blur: whether the final image gets a 3x3 Gaussian blur.
  """
  light_direction: np.ndarray
  ambient: float
  sky_top: np.ndarray
  sky_horizon: np.ndarray
  ground_colours: np.ndarray
  tile_size: float
  fog_distance: float
  shadow_strength: float
  noise_sigma: float
  blur: bool


def pixel_rays(camera_k, width, height) -> np.ndarray:
  """[H, W, 3] float32 rays K^-1 [x, y, 1] of every pixel centre, OpenCV camera frame (z = 1)."""
  xs, ys = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
  pixels = np.stack([xs, ys, np.ones_like(xs)], axis=-1)
  return (pixels @ np.linalg.inv(np.asarray(camera_k, dtype=np.float64)).T).astype(np.float32)


def _shadow_mask(instances, world_to_camera, camera_k, width, height, strength) -> np.ndarray:
  """[H, W] float32 darkening in [0, strength]: a blurred ellipse on the ground under each instance."""
  mask = np.zeros((height, width), np.float32)
  angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
  for instance in instances:
    half = 0.6 * instance.size
    ellipse = np.stack([half[0] * np.cos(angles), np.full_like(angles, -instance.size[1] / 2),
                        half[2] * np.sin(angles)], axis=1)
    points = (ellipse @ instance.rotation.T + instance.translation) @ world_to_camera[:3, :3].T
    points += world_to_camera[:3, 3]
    if (points[:, 2] <= 1e-3).any():
      continue
    pixels = geometry.project_with_intrinsics(points, camera_k)
    fixed = np.round(pixels * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(mask, [fixed], float(strength), lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  sigma = 0.015 * max(width, height)
  return cv2.GaussianBlur(mask, (0, 0), sigma)


def _background(rays, world_to_camera, style, instances, camera_k, rng):
  """The sky and the tiled ground with soft contact shadows: (image [H, W, 3] float32, depth [H, W])."""
  rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
  camera_centre = (-rotation.T @ translation).astype(np.float32)
  height, width = rays.shape[:2]
  rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
  image = np.repeat(style.sky_top * (1 - rows) + style.sky_horizon * rows, width, axis=1).astype(np.float32)
  depth = np.full((height, width), np.inf, np.float32)
  directions = rays @ rotation.astype(np.float32)  # world frame (row vectors: R^T d)
  down = directions[..., 1] < -1e-6
  ground_directions = directions[down]
  distance = -camera_centre[1] / ground_directions[:, 1]  # rays have z = 1: this is also the OpenCV depth
  hits_x = camera_centre[0] + distance * ground_directions[:, 0]
  hits_z = camera_centre[2] + distance * ground_directions[:, 2]
  tiles = np.floor(hits_x / style.tile_size) + np.floor(hits_z / style.tile_size)
  ground = style.ground_colours.astype(np.float32)[tiles.astype(np.int64) % 2]
  shade = 1.0 - _shadow_mask(instances, world_to_camera, camera_k, width, height, style.shadow_strength)[down]
  fog = np.exp(-distance / style.fog_distance)[:, None]
  image[down] = (ground * shade[:, None]) * fog + style.sky_horizon.astype(np.float32) * (1 - fog)
  depth[down] = distance
  # Low-frequency brightness variation over the whole background.
  variation = cv2.resize(rng.uniform(0.92, 1.08, (4, 4)).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC)
  return image * variation[..., None], depth


def _draw_parts(image, depth, rays, instance_index, parts, object_to_camera, camera_k, light_camera, ambient,
                owner_buffer, group_buffer, group_counter):
  """Rasterises one object's faces and decals into the buffers (in place); returns the next free group id."""
  rotation, translation = object_to_camera[:3, :3], object_to_camera[:3, 3]
  for part in parts:
    vertices = part.vertices @ rotation.T + translation
    normals = part.normals @ rotation.T
    part_group = group_counter
    group_counter += 1
    for face_index, face in enumerate(part.faces):
      points = vertices[face]
      normal = normals[face_index]
      if np.dot(normal, points[0]) >= 0:  # back face: the camera sees its inside
        continue
      if part.outlined[face_index]:
        face_group = group_counter
        group_counter += 1
      else:
        face_group = part_group
      brightness = ambient + (1 - ambient) * max(0.0, float(np.dot(normal, light_camera)))
      colour = np.clip(part.colours[face_index] * brightness, 0, 255)
      owned = _fill_face(image, depth, rays, points, normal, colour, camera_k, instance_index, face_group,
                         owner_buffer, group_buffer)
      if owned is None:
        continue
      for decal_face, polygon, decal_colour in part.decals:
        if decal_face == face_index:
          _fill_decal(image, polygon @ rotation.T + translation, np.clip(decal_colour * brightness, 0, 255),
                      camera_k, owned)
  return group_counter


def _fill_face(image, depth, rays, points, normal, colour, camera_k, instance_index, face_group, owner_buffer,
               group_buffer):
  """Z-buffered fill of one planar convex polygon; returns (y0, x0, mask of the pixels it won) or None."""
  height, width = depth.shape
  pixels = geometry.project_with_intrinsics(points, camera_k)
  x0, y0 = np.maximum(np.floor(pixels.min(axis=0)).astype(int), 0)
  x1, y1 = np.minimum(np.ceil(pixels.max(axis=0)).astype(int) + 1, (width, height))
  if x0 >= x1 or y0 >= y1:
    return None
  mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
  fixed = np.round((pixels - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
  cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  window = (slice(y0, y1), slice(x0, x1))
  # The face plane n . X = n . p0 meets the ray z * r at z = (n . p0) / (n . r).
  face_depth = np.dot(normal, points[0]) / (rays[window] @ normal)
  won = (mask > 0) & (face_depth < depth[window])
  if not won.any():
    return None
  depth[window][won] = face_depth[won]
  image[window][won] = colour
  owner_buffer[window][won] = instance_index + 1
  group_buffer[window][won] = face_group
  return y0, x0, won


def _fill_decal(image, polygon_camera, colour, camera_k, owned):
  """Fills a decal polygon, restricted to the pixels its face won (`owned` from `_fill_face`)."""
  y0, x0, won = owned
  pixels = geometry.project_with_intrinsics(polygon_camera, camera_k)
  mask = np.zeros(won.shape, np.uint8)
  fixed = np.round((pixels - (x0, y0)) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
  cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  window = (slice(y0, y0 + won.shape[0]), slice(x0, x0 + won.shape[1]))
  image[window][(mask > 0) & won] = colour


def _outline(image, group_buffer, darkness=0.55):
  """Darkens pixels where the outline group changes to the right or below (face borders and silhouettes)."""
  edge = np.zeros(group_buffer.shape, bool)
  horizontal = group_buffer[:, 1:] != group_buffer[:, :-1]
  vertical = group_buffer[1:, :] != group_buffer[:-1, :]
  edge[:, :-1] |= horizontal
  edge[:-1, :] |= vertical
  image[edge] *= darkness


def silhouette_area(parts, object_to_camera, camera_k, width, height) -> int:
  """Pixels covered by the object alone, counted on a canvas twice the image size (centred on the image)."""
  rotation, translation = object_to_camera[:3, :3], object_to_camera[:3, 3]
  pad_x, pad_y = width // 2, height // 2
  canvas = np.zeros((height + 2 * pad_y, width + 2 * pad_x), np.uint8)
  polygons = []
  for part in parts:
    vertices = part.vertices @ rotation.T + translation
    for face in part.faces:
      pixels = geometry.project_with_intrinsics(vertices[face], camera_k) + (pad_x, pad_y)
      polygons.append(np.round(pixels * (1 << _SUBPIXEL_BITS)).astype(np.int32))
  for polygon in polygons:
    cv2.fillPoly(canvas, [polygon], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
  return int(canvas.sum())


def render(width, height, camera_k, world_to_camera, instances, style, rng):
  """Draws a frame.

  Args:
    width, height: image size, pixels.
    camera_k: [3, 3] intrinsics, pixels.
    world_to_camera: [4, 4] world (y up) -> OpenCV camera transform.
    instances: `Instance`s; every vertex must be in front of the camera (z > 0).
    style: `Style`.
    rng: numpy Generator (background variation and noise).

  Returns:
    (image, visibility): uint8 BGR image [H, W, 3]; [N] float, the fraction of each instance's silhouette
    that is visible in the image (not occluded, not outside the frame).
  """
  rays = pixel_rays(camera_k, width, height)
  image, depth = _background(rays, world_to_camera, style, instances, camera_k, rng)
  owner_buffer = np.zeros((height, width), np.int32)
  group_buffer = np.zeros((height, width), np.int32)
  light_camera = world_to_camera[:3, :3] @ style.light_direction
  group_counter = 1
  transforms = [instance.to_camera(world_to_camera) for instance in instances]
  for index, (instance, object_to_camera) in enumerate(zip(instances, transforms)):
    group_counter = _draw_parts(image, depth, rays, index, instance.parts, object_to_camera, camera_k,
                                light_camera, style.ambient, owner_buffer, group_buffer, group_counter)
  _outline(image, group_buffer)
  image += rng.normal(0.0, style.noise_sigma, image.shape).astype(np.float32)
  image = np.clip(image, 0, 255).astype(np.uint8)
  if style.blur:
    image = cv2.GaussianBlur(image, (3, 3), 0)
  visibility = []
  for index, instance in enumerate(instances):
    total = silhouette_area(instance.parts, transforms[index], camera_k, width, height)
    visible = int(np.count_nonzero(owner_buffer == index + 1))
    visibility.append(min(1.0, visible / total) if total else 0.0)
  return image, np.array(visibility)
