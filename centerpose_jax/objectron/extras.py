"""NVlabs' manual labels of Objectron objects: bad boxes, cups vs mugs (and the mug handle's side), symmetric
chairs.

NVlabs publishes them with CenterPose (`data/label/<category>/*.txt`, NVIDIA Source Code License, so they are
not copied here): pass that `label` folder as `--labels`. Each line is `<sequence key>\\t<object index>`, the
key being the sequence id with '/' replaced by '_' ("cup_batch-9_15") and the index the object's position in
its sequence. The files read:

  <category>/bug_list.txt       any category, optional: boxes to leave out
  cup/cup_list.txt              cups without a handle; every other cup is a mug (`"mug": true`)
  cup/mug_left_list.txt         mugs annotated with the handle on -x: turned 180 degrees about the box's y axis
                                so that every mug's handle is on +x (centre of the +x face)
  chair/symmetric_list.txt      chairs with the 4-fold symmetry: `"symmetric": "True"`, all others "False"

Mugs also get `mug_handle_visible`: whether the camera is outside the box's +x face (so that face, with the
handle, faces it) and the handle point projects inside the image.
"""

import pathlib
import re
from typing import Optional, Set, Tuple

import numpy as np

from centerpose_jax import errors
from centerpose_jax import geometry
from centerpose_jax.objectron import frames

# Rotating a box by 180 degrees about its y axis maps corner i to corner _HALF_TURN_Y[i] (x and z signs flip).
_HALF_TURN_Y = np.array([0, 6, 5, 8, 7, 2, 1, 4, 3])
_FLIP_XZ = np.diag([-1.0, 1.0, -1.0])
REQUIRED_LISTS = {"cup": ("cup_list.txt", "mug_left_list.txt"), "chair": ("symmetric_list.txt",)}

Key = Tuple[str, int]


def read_list(path) -> Set[Key]:
  """The (sequence key, object index) pairs of one label list file."""
  pairs = set()
  for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
    if not line.strip():
      continue
    fields = re.split(r"\s+", line.strip())
    if len(fields) != 2 or not fields[1].isdigit():
      raise errors.CenterPoseError(f"{path}:{number}: expected '<sequence key><tab><object index>', got {line!r}")
    pairs.add((fields[0], int(fields[1])))
  return pairs


class CategoryLabels:
  """The manual labels of one category (empty sets: nothing is changed or added).

  Attributes:
    category: the Objectron class they apply to.
    bugs, cups, mugs_left, symmetric: sets of (sequence key, object index).
    source: where they were read from (for the summary), or "" for none.
  """

  def __init__(self, category, bugs=(), cups=(), mugs_left=(), symmetric=(), source=""):
    self.category = category
    self.bugs, self.cups = set(bugs), set(cups)
    self.mugs_left, self.symmetric = set(mugs_left), set(symmetric)
    self.source = source

  @classmethod
  def load(cls, folder, category) -> "CategoryLabels":
    """Reads `folder/<category>/*.txt` (NVlabs' `data/label` layout); raises CenterPoseError naming a missing
    file that the category needs."""
    root = pathlib.Path(folder) / category
    for name in REQUIRED_LISTS.get(category, ()):
      if not (root / name).is_file():
        raise errors.CenterPoseError(f"{root / name}: missing (the {category} labels need it; --labels is "
                                     "NVlabs CenterPose's data/label folder)")

    def optional(name):
      return read_list(root / name) if (root / name).is_file() else set()

    return cls(category, bugs=optional("bug_list.txt"), cups=optional("cup_list.txt"),
               mugs_left=optional("mug_left_list.txt"), symmetric=optional("symmetric_list.txt"), source=str(root))

  def apply(self, key: str, obj: frames.AnnotatedObject, projection) -> Tuple[Optional[frames.AnnotatedObject], dict]:
    """(the object, possibly turned, and its extra label fields), or (None, {}) for a listed bad box.

    Args:
      key: the sequence key (`frames.sequence_key`).
      obj: the annotated box.
      projection: [4, 4] the frame's projection matrix (for the mug handle's visibility).
    """
    pair = (key, obj.index)
    if pair in self.bugs:
      return None, {}
    extra = {}
    if self.category == "chair" and self.source:
      extra["symmetric"] = "True" if pair in self.symmetric else "False"
    if self.category == "cup" and self.source:
      extra["mug"] = pair not in self.cups
      if extra["mug"]:
        if pair in self.mugs_left:
          obj = turn_half_about_y(obj)
        extra["mug_handle_visible"] = handle_visible(obj, projection)
    return obj, extra


def turn_half_about_y(obj: frames.AnnotatedObject) -> frames.AnnotatedObject:
  """The same box with its frame turned 180 degrees about its y axis (x and z flip; corners renumbered)."""
  return frames.AnnotatedObject(
      index=obj.index, category=obj.category, scale=obj.scale, rotation=obj.rotation @ _FLIP_XZ,
      translation=obj.translation, keypoints_2d=obj.keypoints_2d[_HALF_TURN_Y],
      keypoints_3d=obj.keypoints_3d[_HALF_TURN_Y], visibility=obj.visibility)


def handle_visible(obj: frames.AnnotatedObject, projection) -> bool:
  """Whether a mug's handle (centre of the box's +x face) faces the camera and projects inside the image."""
  camera_in_object = -obj.rotation.T @ obj.translation
  if camera_in_object[0] <= obj.scale[0] / 2:
    return False
  handle = obj.rotation @ np.array([obj.scale[0] / 2, 0.0, 0.0]) + obj.translation
  if handle[2] >= 0:  # behind the camera (OpenGL frame looks along -z)
    return False
  u, v = geometry.project_with_projection_matrix(handle[None], projection, 1.0, 1.0)[0]
  return bool(0.0 <= u <= 1.0 and 0.0 <= v <= 1.0)
