"""The object categories: names, symmetry and flip, in one table.

The nine Objectron classes are the categories CenterPose is trained on (one model per category); a custom
category (docs/custom-objects.md) uses the defaults of `Category`. The table gives the defaults of the config
(`config.get_category_config`): the symmetric target copies TAO hard-codes for chair and bottle, the rotations
the evaluation treats as one pose for the rotationally symmetric bottle, and the corner pairs a horizontal flip
swaps (the same for every category: the 8 corners are ordered alike, `geometry.FLIP_IDX`).
"""

import dataclasses
from typing import Dict, Tuple

from centerpose_jax import geometry


@dataclasses.dataclass(frozen=True)
class Category:
  """One object category.

  Attributes:
    name: the config's `dataset.category` (an Objectron class name for the nine of `OBJECTRON`).
    num_symmetry: symmetric target copies in training (`dataset.num_symmetry`; TAO: chair 4, bottle 12).
    eval_num_symmetry: rotations about the up axis evaluated as the same pose (`evaluate.eval_num_symmetry`).
    flip_idx: 1-based corner pairs swapped by a horizontal flip (`dataset.flip_idx`).
  """
  name: str
  num_symmetry: int = 1
  eval_num_symmetry: int = 1
  flip_idx: Tuple[Tuple[int, int], ...] = geometry.FLIP_IDX


# The Objectron classes, alphabetically (the order of Objectron's index files).
OBJECTRON: Dict[str, Category] = {category.name: category for category in (
    Category("bike"),
    Category("book"),
    Category("bottle", num_symmetry=12, eval_num_symmetry=12),
    Category("camera"),
    Category("cereal_box"),
    Category("chair", num_symmetry=4),
    Category("cup"),
    Category("laptop"),
    Category("shoe"),
)}
NAMES = tuple(OBJECTRON)


def category(name: str) -> Category:
  """The category `name`: its row of `OBJECTRON`, or the defaults of `Category` for a custom one."""
  return OBJECTRON.get(name) or Category(name)
