"""Finding image + JSON pairs in a dataset folder, and the folder as a random-access sequence of raw samples.

An image `x.<ext>` (jpg, jpeg, png or bmp in any letter case) pairs with `x.json` in the same folder. Every
folder under the root is scanned, depth first in sorted order, each folder's own files before its
sub-folders (for TAO's layouts, where only leaf folders hold files, this is TAO's order). Unlike TAO:
  * the root is closed: a symbolic link (file or folder) that leads outside the root, or nowhere, is not
    followed; such links are counted and reported once. A linked folder inside the root is scanned once,
    however many links lead to it (no cycles);
  * a folder's own pairs are used even when it has sub-folders (TAO scans leaf folders only, so one
    sub-folder, a link included, hid every pair beside it);
  * the order is sorted (deterministic across file systems), the JSON path comes from the file stem (TAO's
    `str.replace` of the extension breaks on folder names containing it), and images without a JSON and
    label JSONs without an image are listed instead of silently dropped.
"""

import dataclasses
import json
import logging
import pathlib
import typing
from typing import List, Optional

from centerpose_jax import errors

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "bmp")
_LISTED_LINKS = 5  # links named in the warning


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
    pairs: (image path, JSON path) pairs, in walk order.
    images_without_json: image paths that have no JSON next to them.
    jsons_without_image: JSON paths without an image of the same stem, in folders that hold images or have
      no sub-folder (so a settings file at the top of a dataset, like synthetic.json, is not one).
    links_not_followed: symbolic links that lead outside the root or nowhere.
  """
  pairs: List[typing.Tuple[str, str]]
  images_without_json: List[str]
  jsons_without_image: List[str] = dataclasses.field(default_factory=list)
  links_not_followed: List[str] = dataclasses.field(default_factory=list)


def is_image_file(path) -> bool:
  """Whether `path` has one of the image extensions, in any letter case."""
  return pathlib.Path(path).suffix[1:].lower() in IMAGE_EXTENSIONS


def _inside(path: pathlib.Path, root: pathlib.Path) -> bool:
  return path == root or root in path.parents


@dataclasses.dataclass(frozen=True)
class Scan:
  """Every folder under a root with its files (see the module docstring for the rules).

  Attributes:
    folders: (folder, its files sorted, whether it has sub-folders), depth first in sorted order.
    links_not_followed: symbolic links that lead outside the root or nowhere, sorted.
  """
  folders: List[typing.Tuple[pathlib.Path, List[pathlib.Path], bool]]
  links_not_followed: List[str]


def scan(root) -> Scan:
  """Walks `root` (see the module docstring). Raises InputNotFoundError when `root` is not a folder."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise errors.InputNotFoundError(f"{root}: not a folder")
  real_root = root.resolve()
  visited, folders, unfollowed = set(), [], []

  def visit(folder: pathlib.Path):
    real = folder.resolve()
    if real in visited:
      return
    visited.add(real)
    files, subfolders = [], []
    for entry in sorted(folder.iterdir()):
      if entry.is_symlink() and (not entry.exists() or not _inside(entry.resolve(), real_root)):
        unfollowed.append(str(entry))
      elif entry.is_dir():
        subfolders.append(entry)
      elif entry.is_file():
        files.append(entry)
    folders.append((folder, files, bool(subfolders)))
    for subfolder in subfolders:
      visit(subfolder)

  visit(root)
  if unfollowed:
    logging.warning("%s: %d symbolic link(s) lead outside the dataset root (or nowhere) and were not followed: "
                    "%s%s", root, len(unfollowed), ", ".join(unfollowed[:_LISTED_LINKS]),
                    ", ..." if len(unfollowed) > _LISTED_LINKS else "")
  return Scan(folders=folders, links_not_followed=sorted(unfollowed))


def discover(root) -> Discovery:
  """Image + JSON pairs under `root` (see the module docstring).

  Raises:
    errors.InputNotFoundError (a FileNotFoundError): `root` is not a folder, or it holds no image + JSON pair.
  """
  found = scan(root)
  pairs, missing, orphans = [], [], []
  for _, files, has_subfolders in found.folders:
    images = [path for path in files if is_image_file(path)]
    stems, present = {path.stem for path in images}, set(files)
    for image_path in images:
      json_path = image_path.with_suffix(".json")
      if json_path in present:
        pairs.append((str(image_path), str(json_path)))
      else:
        missing.append(str(image_path))
    if images or not has_subfolders:
      orphans += [str(path) for path in files if path.suffix.lower() == ".json" and path.stem not in stems]
  if not pairs:
    raise errors.InputNotFoundError(
        f"{root}: no image ({', '.join(IMAGE_EXTENSIONS)}, any case) with a JSON label of the same name in it "
        f"or its sub-folders ({len(missing)} images without JSON, {len(orphans)} JSON without image, "
        f"{len(found.links_not_followed)} links not followed)")
  return Discovery(pairs=pairs, images_without_json=missing, jsons_without_image=orphans,
                   links_not_followed=found.links_not_followed)


class FolderSamples:
  """Random-access sequence of `RawSample`s of a dataset folder, in `discover` order (picklable).

  Reads a sample's files only when it is indexed. `annotation(i)` reads just the JSON (for validation).
  """

  def __init__(self, root):
    self.root = str(root)
    found = discover(root)
    self.pairs = found.pairs
    self.images_without_json = found.images_without_json
    self.jsons_without_image = found.jsons_without_image
    self.links_not_followed = found.links_not_followed

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
