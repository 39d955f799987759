"""Finding image + JSON pairs in a dataset folder, and the folder as a random-access sequence of raw samples.

Like TAO, only leaf folders are scanned (a folder with any sub-folder is recursed into and its own files are
ignored), and an image `x.<ext>` (jpg, jpeg, png or bmp in any letter case) pairs with `x.json` in the same
folder. Unlike TAO, the order is sorted (deterministic across file systems), the JSON path comes from the
file stem (TAO's `str.replace` of the extension breaks on folder names containing it), and images without a
JSON are counted instead of silently dropped.
"""

import dataclasses
import json
import os
import pathlib
import typing
from typing import List, Optional

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp")


class RawSample(typing.NamedTuple):
  """One undecoded sample, whatever stores it (folder, packed ArrayRecord shards, ...).

  Attributes:
    image_bytes: the image file's bytes (PNG, JPEG, ... as stored).
    annotation: the parsed CenterPose JSON label (dict), or None for an unlabelled image.
    path: the image path it came from (for messages and outputs).
    json_path: the label file's path when the label comes from a file, else None.
  """
  image_bytes: bytes
  annotation: Optional[dict]
  path: str
  json_path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Discovery:
  """What a folder walk found.

  Attributes:
    pairs: sorted (image path, JSON path) pairs.
    images_without_json: sorted image paths that have no JSON next to them.
  """
  pairs: List[typing.Tuple[str, str]]
  images_without_json: List[str]


def is_image_file(path) -> bool:
  """Whether `path` has one of the image extensions, in any letter case."""
  return pathlib.Path(path).suffix[1:].lower() in IMAGE_EXTENSIONS


def leaf_folders(root) -> List[pathlib.Path]:
  """Sorted leaf folders under `root` (`root` itself when it has no sub-folder), as TAO's walk visits them."""
  root = pathlib.Path(root)
  subfolders = sorted(entry for entry in root.iterdir() if entry.is_dir())
  if not subfolders:
    return [root]
  return [leaf for folder in subfolders for leaf in leaf_folders(folder)]


def list_images(root) -> List[str]:
  """Sorted image paths in the leaf folders under `root` (for inference, where no JSON is needed)."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise FileNotFoundError(f"{root}: not a folder")
  return [str(path) for folder in leaf_folders(root) for path in sorted(folder.iterdir())
          if path.is_file() and is_image_file(path)]


def discover(root) -> Discovery:
  """Image + JSON pairs under `root` (see the module docstring).

  Raises:
    FileNotFoundError: `root` is not a folder, or it holds no image + JSON pair.
  """
  pairs, missing = [], []
  for image_path in list_images(root):
    json_path = os.path.splitext(image_path)[0] + ".json"
    if os.path.isfile(json_path):
      pairs.append((image_path, json_path))
    else:
      missing.append(image_path)
  if not pairs:
    raise FileNotFoundError(
        f"{root}: no image ({', '.join(IMAGE_EXTENSIONS)}, any case) with a JSON label of the same name in its "
        f"leaf folders ({len(missing)} images without JSON)")
  return Discovery(pairs=pairs, images_without_json=missing)


class FolderSamples:
  """Random-access sequence of `RawSample`s of a dataset folder, in `discover` order (picklable).

  Reads a sample's files only when it is indexed. `annotation(i)` reads just the JSON (for validation).
  """

  def __init__(self, root):
    self.root = str(root)
    found = discover(root)
    self.pairs = found.pairs
    self.images_without_json = found.images_without_json

  def __len__(self) -> int:
    return len(self.pairs)

  def annotation(self, index) -> dict:
    """The parsed JSON label of sample `index` (raises OSError or ValueError for an unreadable file)."""
    with open(self.pairs[index][1], encoding="utf-8") as f:
      return json.load(f)

  def __getitem__(self, index) -> RawSample:
    image_path, json_path = self.pairs[index]
    with open(image_path, "rb") as f:
      image_bytes = f.read()
    return RawSample(image_bytes=image_bytes, annotation=self.annotation(index), path=image_path,
                     json_path=json_path)

  def __repr__(self) -> str:
    return f"FolderSamples({self.root!r}, {len(self)} samples)"


class SubsetSamples:
  """The samples of `source` at `indices`, in that order (a random-access view; picklable if `source` is)."""

  def __init__(self, source, indices):
    self.source = source
    self.indices = list(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index):
    return self.source[self.indices[index]]

  def annotation(self, index) -> dict:
    return sample_annotation(self.source, self.indices[index])


def sample_annotation(source, index) -> dict:
  """The JSON label of sample `index` of any raw-sample sequence, without decoding its image when possible."""
  read_annotation = getattr(source, "annotation", None)
  return read_annotation(index) if read_annotation is not None else source[index].annotation


def sample_label_path(source, index) -> str:
  """A name for sample `index`'s label in messages: its JSON path, or its image path for packed sources."""
  pairs = getattr(source, "pairs", None)
  if pairs is not None:
    return pairs[index][1]
  if isinstance(source, SubsetSamples):
    return sample_label_path(source.source, source.indices[index])
  sample = source[index]
  return getattr(sample, "json_path", None) or sample.path
