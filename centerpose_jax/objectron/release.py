"""Where things are in a local copy of Google's Objectron release (the `objectron` bucket's layout).

  index/<class>_annotations_<split>            one sequence id per line, "bike/batch-10/3" (also v1/index/)
  annotations/<class>/batch-i/j.pbdata          one Sequence message per sequence
  videos/<class>/batch-i/j/video.MOV            its video (1440x1920 portrait, 30 fps)
  v1/records_shuffled/<class>/<class>_<split>-NNNNN-of-MMMMM
                                                TFRecords of single annotated frames (also records_shuffled/)
"""

import pathlib
from typing import List

from centerpose_jax import categories
from centerpose_jax import errors

SPLITS = ("train", "test")
_INDEX_FOLDERS = ("index", "v1/index")
_RECORD_FOLDERS = ("v1/records_shuffled", "records_shuffled")


def check_category_and_split(category, split):
  if category not in categories.NAMES:
    raise errors.CenterPoseError(f"unknown Objectron category {category!r}; expected one of {', '.join(categories.NAMES)}")
  if split not in SPLITS:
    raise errors.CenterPoseError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def sequence_ids(src, category, split) -> List[str]:
  """The sequence ids of the index file of (category, split), in file order."""
  check_category_and_split(category, split)
  candidates = [pathlib.Path(src) / folder / f"{category}_annotations_{split}" for folder in _INDEX_FOLDERS]
  for path in candidates:
    if path.is_file():
      ids = [line.strip().strip("/") for line in path.read_text().splitlines() if line.strip()]
      if not ids:
        raise errors.CenterPoseError(f"{path}: empty index")
      return ids
  raise errors.CenterPoseError(f"no index of {category} {split}: expected {' or '.join(map(str, candidates))} "
                               "(docs/data-preparation.md says what to download)")


def annotation_path(src, sequence_id) -> pathlib.Path:
  return pathlib.Path(src) / "annotations" / f"{sequence_id}.pbdata"


def video_path(src, sequence_id) -> pathlib.Path:
  return pathlib.Path(src) / "videos" / sequence_id / "video.MOV"


def record_files(src, category, split) -> List[pathlib.Path]:
  """The sorted records_shuffled files of (category, split)."""
  check_category_and_split(category, split)
  folders = [pathlib.Path(src) / folder / category for folder in _RECORD_FOLDERS]
  for folder in folders:
    files = sorted(path for path in folder.glob(f"{category}_{split}-*") if path.is_file())
    if files:
      return files
  raise errors.CenterPoseError(f"no {category}_{split}-* record files in {' or '.join(map(str, folders))}")
