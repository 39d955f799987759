"""Low-poly object models of the Objectron categories for the synthetic dataset generator.

A model is a list of convex `Part`s in the object frame (metres; x = width, y = up, z = front, as the
Objectron cuboid in `geometry.py`). `build_model(category, rng)` returns the parts moved so that the
axis-aligned bounding box of all vertices is centred at the origin, and that box's size: the labelled cuboid
is exactly the bounding cuboid of the drawn object.

Face colours come from the outward face normal in the part's own frame (before any rotation): each category
uses one fixed palette per direction (+x, -x, +y, -y, +z, -z), jittered a little per instance, so the
front (+z) and top (+y) of every instance look alike and the object's orientation can be seen. Decals
(flat polygons drawn on top of a face, e.g. a label in the upper-left of the front) break the remaining
mirror symmetries.
"""

import dataclasses

import numpy as np

from centerpose_jax import categories
from centerpose_jax import geometry


# Direction order used by every palette: +x, -x, +y, -y, +z, -z (the order of `geometry.FACES`).
_DIRECTIONS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)

# BGR colours.
_WHITE = (235, 235, 235)
_BLACK = (35, 35, 35)
_DARK_GREY = (70, 70, 70)
_SILVER = (185, 185, 180)


@dataclasses.dataclass
class Part:
  """One convex solid.

  Attributes:
    vertices: [V, 3] object frame, metres.
    faces: convex polygons, each an index array into `vertices` in cyclic order.
    normals: [F, 3] outward unit normals, object frame.
    colours: [F, 3] BGR base colours in [0, 255] (before lighting).
    outlined: [F] bool, whether the face's border is drawn as a dark line (off for the facets of round parts).
    decals: (face index, [K, 3] polygon in the face's plane, BGR colour) drawn over their face when it is visible.
  """
  vertices: np.ndarray
  faces: list
  normals: np.ndarray
  colours: np.ndarray
  outlined: np.ndarray
  decals: list

  def transformed(self, rotation, translation) -> "Part":
    """This part moved by x -> rotation @ x + translation (rotation [3, 3], translation [3], metres)."""
    rotation = np.asarray(rotation, dtype=np.float64)
    translation = np.asarray(translation, dtype=np.float64)
    move = lambda points: points @ rotation.T + translation
    return Part(move(self.vertices), self.faces, self.normals @ rotation.T, self.colours, self.outlined,
                [(face, move(polygon), colour) for face, polygon, colour in self.decals])


def _outward_normals(vertices, faces) -> np.ndarray:
  """[F, 3] unit normals of convex polygons (from their first three vertices), turned away from the centroid."""
  first, second, third = (vertices[[face[k] for face in faces]] for k in range(3))
  normals = np.cross(second - first, third - first)
  normals /= np.linalg.norm(normals, axis=1, keepdims=True)
  centres = np.array([vertices[face].mean(axis=0) for face in faces])
  outward = np.sum(normals * (centres - vertices.mean(axis=0)), axis=1)
  return np.where(outward[:, None] < 0, -normals, normals)


def _make_part(vertices, faces, palette, outlined=None) -> Part:
  """A `Part` whose face colours are the `palette` [6, 3] entries of the directions nearest the face normals."""
  vertices = np.asarray(vertices, dtype=np.float64)
  faces = [np.asarray(face, dtype=np.int64) for face in faces]
  normals = _outward_normals(vertices, faces)
  colours = np.asarray(palette, dtype=np.float64)[np.argmax(normals @ _DIRECTIONS.T, axis=1)]
  outlined = np.ones(len(faces), bool) if outlined is None else np.asarray(outlined, bool)
  return Part(vertices, faces, normals, colours, outlined, [])


def _uniform_palette(colour) -> np.ndarray:
  return np.tile(np.asarray(colour, dtype=np.float64), (6, 1))


def box(low, high, palette) -> Part:
  """Axis-aligned box from corner `low` [3] to `high` [3] (metres); faces in `geometry.FACES` order."""
  low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
  vertices = (low + high) / 2 + geometry.cuboid_vertices(high - low)
  return _make_part(vertices, [list(face) for face in geometry.FACES], palette)


def frustum(axis, centre, radius_start, radius_end, start, end, palette, sides=16) -> Part:
  """A truncated cone (a cylinder when the radii agree) along object `axis` (0, 1 or 2).

  `centre` [3] fixes the two other coordinates; the solid runs from `start` to `end` along `axis` with radii
  `radius_start` and `radius_end` (metres). The side facets are not outlined; the two caps are.
  """
  others = [a for a in range(3) if a != axis]
  angles = 2 * np.pi * (np.arange(sides) + 0.5) / sides
  rings = []
  for radius, position in ((radius_start, start), (radius_end, end)):
    ring = np.tile(np.asarray(centre, dtype=np.float64), (sides, 1))
    ring[:, others[0]] += radius * np.cos(angles)
    ring[:, others[1]] += radius * np.sin(angles)
    ring[:, axis] = position
    rings.append(ring)
  vertices = np.concatenate(rings)
  faces = [[i, (i + 1) % sides, sides + (i + 1) % sides, sides + i] for i in range(sides)]
  faces += [list(range(sides)), list(range(sides, 2 * sides))]
  return _make_part(vertices, faces, palette, outlined=[False] * sides + [True, True])


def prism(profile, axis, start, end, palette) -> Part:
  """A convex 2D `profile` [N, 2] (in the two other object axes, in increasing order) extruded along `axis`."""
  profile = np.asarray(profile, dtype=np.float64)
  others = [a for a in range(3) if a != axis]
  count = len(profile)
  vertices = np.zeros((2 * count, 3))
  for k, position in enumerate((start, end)):
    vertices[k * count:(k + 1) * count, others] = profile
    vertices[k * count:(k + 1) * count, axis] = position
  faces = [[i, (i + 1) % count, count + (i + 1) % count, count + i] for i in range(count)]
  faces += [list(range(count)), list(range(count, 2 * count))]
  return _make_part(vertices, faces, palette)


def beam(point_from, point_to, thickness, colour) -> Part:
  """A square-section bar of side `thickness` from `point_from` to `point_to` (metres), one colour."""
  point_from, point_to = np.asarray(point_from, np.float64), np.asarray(point_to, np.float64)
  direction = point_to - point_from
  length = np.linalg.norm(direction)
  w = direction / length
  helper = np.array([1.0, 0.0, 0.0]) if abs(w[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
  u = np.cross(helper, w)
  u /= np.linalg.norm(u)
  rotation = np.stack([u, np.cross(w, u), w], axis=1)
  half = thickness / 2
  local = box((-half, -half, 0.0), (half, half, length), _uniform_palette(colour))
  return local.transformed(rotation, point_from)


def add_decal(part, direction, first_range, second_range, colour, polygon=None) -> None:
  """Puts a flat decal on the face of an axis-aligned `part` whose normal is `direction` (index into +x..-z).

  The decal is a rectangle covering the fractions `first_range` x `second_range` of the face along the two
  other axes (increasing axis order; fraction 0 is the low side), or, with `polygon` [K, 2], that polygon
  in the same fractional coordinates.
  """
  face = int(np.argmax(part.normals @ _DIRECTIONS[direction]))
  axis = direction // 2
  others = [a for a in range(3) if a != axis]
  low, high = part.vertices.min(axis=0), part.vertices.max(axis=0)
  if polygon is None:
    (a0, a1), (b0, b1) = first_range, second_range
    polygon = [(a0, b0), (a1, b0), (a1, b1), (a0, b1)]
  polygon = np.asarray(polygon, dtype=np.float64)
  points = np.zeros((len(polygon), 3))
  points[:, axis] = high[axis] if direction % 2 == 0 else low[axis]
  for k, other in enumerate(others):
    points[:, other] = low[other] + polygon[:, k] * (high[other] - low[other])
  part.decals.append((face, points, np.asarray(colour, dtype=np.float64)))


def _disc_decal(part, axis_direction, radius_fraction, colour, count=12) -> None:
  """A disc decal (polygon) centred on the flat cap of a `frustum` part facing `axis_direction`."""
  angles = 2 * np.pi * np.arange(count) / count
  circle = 0.5 + 0.5 * radius_fraction * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  add_decal(part, axis_direction, None, None, colour, polygon=circle)


def _jitter(colour, rng, amount=18.0) -> np.ndarray:
  return np.clip(np.asarray(colour, dtype=np.float64) + rng.uniform(-amount, amount, 3), 0, 255)


def _palette(colours, rng) -> np.ndarray:
  """[6, 3] per-direction colours (+x, -x, +y, -y, +z, -z), each jittered for this instance."""
  return np.stack([_jitter(colour, rng) for colour in colours])


def _dims(nominal, rng, spread=0.15) -> np.ndarray:
  """Nominal sizes (metres) scaled by independent factors in [1 - spread, 1 + spread]."""
  return np.asarray(nominal, dtype=np.float64) * rng.uniform(1 - spread, 1 + spread, len(nominal))


def _cereal_box(rng):
  w, h, d = _dims((0.19, 0.28, 0.07), rng)
  palette = _palette([(170, 90, 30), (40, 140, 40), (70, 200, 230), (60, 60, 60), (40, 40, 200),
                      (150, 70, 140)], rng)
  body = box((-w / 2, 0, -d / 2), (w / 2, h, d / 2), palette)
  add_decal(body, 4, (0.1, 0.45), (0.62, 0.92), _WHITE)  # logo: upper left of the front
  add_decal(body, 4, (0.15, 0.85), (0.12, 0.4), _jitter((40, 190, 240), rng))  # bowl picture
  add_decal(body, 2, (0.05, 0.95), (0.7, 0.95), _WHITE)  # top flap near the front
  return [body]


def _book(rng):
  w, h, d = _dims((0.16, 0.035, 0.23), rng)
  paper = (200, 225, 235)
  cover = _jitter((60, 50, 160), rng)
  palette = np.stack([_jitter(paper, rng, 8), _jitter((110, 40, 40), rng), cover, cover * 0.8,
                      _jitter(paper, rng, 8), _jitter((190, 210, 220), rng, 8)])
  book = box((-w / 2, 0, -d / 2), (w / 2, h, d / 2), palette)
  add_decal(book, 2, (0.15, 0.85), (0.6, 0.85), _jitter((90, 210, 240), rng))  # title near the front
  add_decal(book, 2, (0.05, 0.15), (0.05, 0.95), _jitter((110, 40, 40), rng))  # spine edge on the left
  for stripe in (0.3, 0.6):  # page edges
    add_decal(book, 0, (stripe, stripe + 0.05), (0.03, 0.97), _jitter((150, 170, 180), rng, 8))
  return [book]


def _bottle(rng):
  radius, height = _dims((0.036, 0.24), rng)
  glass = _jitter((60, 140, 40), rng)
  body_palette = np.stack([glass * 0.9, glass * 0.8, glass, glass * 0.6, _jitter((40, 40, 210), rng),
                           glass * 0.7])
  body = frustum(1, (0, 0, 0), radius, radius, 0.0, 0.62 * height, body_palette)
  shoulder = frustum(1, (0, 0, 0), radius, 0.4 * radius, 0.62 * height, 0.78 * height,
                     _uniform_palette(glass))
  neck = frustum(1, (0, 0, 0), 0.4 * radius, 0.4 * radius, 0.78 * height, 0.92 * height, _uniform_palette(glass),
                 sides=10)
  cap = frustum(1, (0, 0, 0), 0.45 * radius, 0.45 * radius, 0.92 * height, height,
                _uniform_palette(_jitter(_WHITE, rng)), sides=10)
  return [body, shoulder, neck, cap]


def _cup(rng):
  radius, height = _dims((0.042, 0.095), rng)
  ceramic = _palette([(200, 130, 60), (60, 160, 60), (220, 220, 220), (90, 90, 90), (50, 50, 200),
                      (150, 90, 150)], rng)
  body = frustum(1, (0, 0, 0), 0.8 * radius, radius, 0.0, height, ceramic, sides=16)
  _disc_decal(body, 2, 0.85, _jitter((40, 60, 80), rng))  # the opening
  handle_colour = ceramic[0]
  reach = radius + 0.035
  thickness = 0.012
  handle = [beam((radius * 0.85, 0.75 * height, 0), (reach, 0.75 * height, 0), thickness, handle_colour),
            beam((reach, 0.75 * height + thickness / 2, 0), (reach, 0.25 * height - thickness / 2, 0), thickness,
                 handle_colour),
            beam((reach, 0.25 * height, 0), (radius * 0.8, 0.25 * height, 0), thickness, handle_colour)]
  return [body] + handle


def _camera(rng):
  w, h, d = _dims((0.13, 0.08, 0.055), rng)
  palette = _palette([(150, 150, 150), (110, 110, 110), (200, 200, 200), (60, 60, 60), (40, 40, 40),
                      (120, 80, 60)], rng)
  body = box((-w / 2, 0, -d / 2), (w / 2, h, d / 2), palette)
  add_decal(body, 4, (0.05, 0.3), (0.15, 0.85), _jitter((60, 60, 170), rng))  # grip on the left
  lens_radius = 0.32 * h
  lens_length = 0.55 * d
  lens = frustum(2, (0.05 * w, 0.45 * h, 0), lens_radius, 0.9 * lens_radius, d / 2, d / 2 + lens_length,
                 _uniform_palette(_jitter(_BLACK, rng, 10)))
  _disc_decal(lens, 4, 0.7, _jitter((120, 60, 40), rng))  # glass
  hump = box((-0.15 * w, h, -d / 3), (0.15 * w, 1.2 * h, d / 3), palette)
  button = box((0.3 * w, h, -d / 6), (0.4 * w, 1.08 * h, d / 6), _uniform_palette(_jitter((40, 40, 200), rng)))
  return [body, lens, hump, button]


def _chair(rng):
  w, h, d = _dims((0.48, 0.85, 0.48), rng, spread=0.12)
  seat_height = h * rng.uniform(0.48, 0.55)
  seat_thickness = 0.06
  wood = _palette([(60, 110, 170), (50, 100, 150), (90, 160, 210), (40, 70, 110), (40, 40, 190),
                   (120, 70, 130)], rng)
  leg = 0.04
  seat = box((-w / 2, seat_height - seat_thickness, -d / 2), (w / 2, seat_height, d / 2), wood)
  add_decal(seat, 2, (0.1, 0.9), (0.55, 0.9), _jitter((80, 190, 240), rng))  # cushion stripe at the front
  parts = [seat]
  for sx in (-1, 1):
    for sz in (-1, 1):
      x0 = w / 2 - leg if sx > 0 else -w / 2
      z0 = d / 2 - leg if sz > 0 else -d / 2
      parts.append(box((x0, 0, z0), (x0 + leg, seat_height - seat_thickness, z0 + leg),
                       _uniform_palette(_jitter(_DARK_GREY, rng))))
  back = box((-w / 2, seat_height, -d / 2), (w / 2, h, -d / 2 + 0.05), wood)
  add_decal(back, 4, (0.08, 0.4), (0.55, 0.9), _WHITE)  # badge on the upper left of the back rest
  parts.append(back)
  return parts


def _laptop(rng):
  w, base_depth = _dims((0.33, 0.23), rng, spread=0.12)
  base_thickness, screen_thickness = 0.018, 0.008
  shell = _palette([(170, 170, 170), (150, 150, 150), (200, 200, 200), (90, 90, 90), (60, 60, 60),
                    (180, 120, 90)], rng)
  base = box((-w / 2, 0, -base_depth / 2), (w / 2, base_thickness, base_depth / 2), shell)
  add_decal(base, 2, (0.08, 0.92), (0.45, 0.9), _jitter(_BLACK, rng, 10))  # keyboard
  add_decal(base, 2, (0.38, 0.62), (0.08, 0.38), _jitter((120, 120, 120), rng, 10))  # touchpad
  lid_height = base_depth * rng.uniform(0.9, 1.0)
  # The lid stands on the rear edge of the base, display on its +z face, then tilts back about the hinge.
  lid = box((-w / 2, 0, -screen_thickness), (w / 2, lid_height, 0), shell)
  add_decal(lid, 4, (0.05, 0.95), (0.08, 0.92), _jitter((110, 60, 30), rng))  # display
  add_decal(lid, 4, (0.08, 0.35), (0.7, 0.88), _jitter((200, 160, 90), rng))  # window, upper left
  tilt = np.deg2rad(rng.uniform(5, 35))  # beyond upright
  c, s = np.cos(tilt), np.sin(tilt)
  tilt_back = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])  # turns +y towards -z
  return [base, lid.transformed(tilt_back, (0, base_thickness, -base_depth / 2))]


def _shoe(rng):
  w, h, length = _dims((0.1, 0.11, 0.28), rng, spread=0.12)
  sole_height = 0.22 * h
  sole = box((-w / 2, 0, -length / 2), (w / 2, sole_height, length / 2),
             _uniform_palette(_jitter((225, 225, 225), rng, 10)))
  upper_palette = _palette([(160, 80, 40), (40, 120, 40), (60, 160, 220), (60, 60, 60), (40, 40, 200),
                            (140, 60, 130)], rng)
  # Side profile (y, z): low toe at the front (+z), high collar at the back.
  profile = [(sole_height, -0.48 * length), (sole_height, 0.47 * length), (0.45 * h, 0.5 * length),
             (0.62 * h, 0.2 * length), (h, -0.25 * length), (h, -0.5 * length)]
  upper = prism(profile, 0, -0.45 * w, 0.45 * w, upper_palette)
  add_decal(upper, 2, (0.2, 0.8), (0.03, 0.22), _jitter((30, 30, 40), rng, 8))  # the opening at the back
  upper.decals.append(_side_stripe(upper, length, h, +1, _jitter(_WHITE, rng)))
  upper.decals.append(_side_stripe(upper, length, h, -1, _jitter(_WHITE, rng)))
  return [sole, upper]


def _side_stripe(upper, length, height, side, colour):
  """A swoosh-like quadrilateral decal on the +x (side=+1) or -x (side=-1) face of the shoe upper."""
  x = upper.vertices[:, 0].max() if side > 0 else upper.vertices[:, 0].min()
  face = int(np.argmax(upper.normals @ np.array([side, 0.0, 0.0])))
  polygon = np.array([[x, 0.3 * height, 0.25 * length], [x, 0.35 * height, 0.3 * length],
                      [x, 0.75 * height, -0.3 * length], [x, 0.6 * height, -0.3 * length]])
  return face, polygon, np.asarray(colour, dtype=np.float64)


def _bike(rng):
  w, h, length = _dims((0.55, 1.0, 1.7), rng, spread=0.1)
  wheel_radius = 0.34 * h
  tyre = _uniform_palette(_jitter(_BLACK, rng, 10))
  frame = _jitter((40, 40, 200), rng, 25)
  parts = []
  hubs = []
  for sz in (-1, 1):
    hub = np.array([0.0, wheel_radius, sz * (length / 2 - wheel_radius)])
    hubs.append(hub)
    wheel = frustum(0, hub, wheel_radius, wheel_radius, -0.025, 0.025, tyre, sides=20)
    for direction in (0, 1):
      _disc_decal(wheel, direction, 0.8, _jitter(_SILVER, rng, 10))
    parts.append(wheel)
  rear_hub, front_hub = hubs
  crank = np.array([0.0, 0.85 * wheel_radius, -0.05 * length])
  seat_top = np.array([0.0, 0.92 * h, -0.2 * length])
  head_top = np.array([0.0, 0.88 * h, 0.28 * length])
  head_bottom = np.array([0.0, 0.7 * h, 0.3 * length])
  tubes = [(rear_hub, crank), (rear_hub, seat_top), (crank, seat_top), (crank, head_bottom),
           (seat_top, head_top), (head_bottom, head_top), (front_hub, head_bottom)]
  parts += [beam(a, b, 0.035, frame) for a, b in tubes]
  bar = head_top + np.array([0.0, 0.08 * h, 0.0])
  parts.append(beam(head_top, bar, 0.03, _DARK_GREY))
  parts.append(beam(bar - np.array([w / 2, 0, 0]), bar + np.array([w / 2, 0, 0]), 0.03, _DARK_GREY))
  saddle = box(seat_top + np.array([-0.07, 0.0, -0.12]), seat_top + np.array([0.07, 0.05, 0.1]),
               _uniform_palette(_jitter(_BLACK, rng, 10)))
  parts.append(saddle)
  return parts


_BUILDERS = {
    "bike": _bike, "book": _book, "bottle": _bottle, "camera": _camera, "cereal_box": _cereal_box,
    "chair": _chair, "cup": _cup, "laptop": _laptop, "shoe": _shoe,
}


def build_model(category, rng):
  """A random instance of `category`: (parts centred on their bounding box, box size [3] in metres).

  Args:
    category: one of `categories.NAMES`.
    rng: numpy Generator (sizes, colour jitter, category-specific shape parameters).

  Returns:
    (parts, size): convex `Part`s in the object frame (x width, y up, z front) whose union's axis-aligned
    bounding box is [-size/2, size/2]; size is (x, y, z) in metres.
  """
  if category not in _BUILDERS:
    raise ValueError(f"unknown category {category!r}; expected one of {', '.join(categories.NAMES)}")
  parts = _BUILDERS[category](rng)
  points = np.concatenate([part.vertices for part in parts])
  low, high = points.min(axis=0), points.max(axis=0)
  centre = (low + high) / 2
  return [part.transformed(np.eye(3), -centre) for part in parts], high - low
