"""ImageNet backbone weights fetched once into a cache folder, as TAO does with `model.use_pretrained=True`.

TAO's DLA34 (`model_utils.DLA.load_pretrained_model`) downloads the ucbdrive ImageNet weights with
`torch.utils.model_zoo.load_url` from `DLA34_IMAGENET.url`. Here the file is downloaded once into
`cache_dir()` (`$CENTERPOSE_JAX_CACHE`, else `$XDG_CACHE_HOME/centerpose_jax`, else
`~/.cache/centerpose_jax`), its SHA-256 is checked, and later runs use the cached copy. A copy that PyTorch
already downloaded (`~/.cache/torch/hub/checkpoints/`) is used as well when its checksum matches. FAN's ImageNet
weights are an NGC download behind a login, so FAN needs `model.backbone.pretrained_backbone_path`.

Checksums: the file name carries the first 8 hex digits of its SHA-256 (PyTorch's hub naming, which
`model_zoo.load_url` of PyTorch 0.4, the version CenterNet and DLA were released with, verified on every
download). The full digest was not available where this was written, so `DLA34_IMAGENET.sha256` holds that
prefix; a full 64-digit digest can be put there as is, and `verify_sha256` accepts either.
"""

import dataclasses
import hashlib
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

import tqdm

from centerpose_jax import errors

CACHE_ENV = "CENTERPOSE_JAX_CACHE"
_TORCH_HUB_CACHE = pathlib.Path("~/.cache/torch/hub/checkpoints")
_CHUNK = 1 << 20
_TIMEOUT_S = 30


@dataclasses.dataclass(frozen=True)
class PretrainedWeights:
  """A public weights file.

  Attributes:
    name: what it is, for messages.
    url: where to download it.
    file_name: its name in the cache folder.
    sha256: hex SHA-256 of the file, or its leading digits (at least 8).
  """
  name: str
  url: str
  file_name: str
  sha256: str


DLA34_IMAGENET = PretrainedWeights(
    name="DLA34 ImageNet weights (ucbdrive, as TAO)",
    url="http://dl.yf.io/dla/models/imagenet/dla34-ba72cf86.pth",
    file_name="dla34-ba72cf86.pth",
    sha256="ba72cf86")


class PretrainedDownloadError(errors.CenterPoseError, OSError):
  """The weights could not be downloaded or failed their checksum; the message says where to put them."""


def cache_dir() -> pathlib.Path:
  """Folder of downloaded weights: `$CENTERPOSE_JAX_CACHE`, `$XDG_CACHE_HOME/centerpose_jax` or
  `~/.cache/centerpose_jax`."""
  if os.environ.get(CACHE_ENV):
    return pathlib.Path(os.environ[CACHE_ENV]).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path("~/.cache").expanduser()
  return pathlib.Path(base) / "centerpose_jax"


def file_sha256(path) -> str:
  """Hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def verify_sha256(path, expected: str) -> bool:
  """Whether the file's SHA-256 equals `expected` (a full hex digest) or starts with it (a prefix)."""
  if len(expected) < 8:
    raise ValueError(f"a checksum needs at least 8 hex digits, got {expected!r}")
  return file_sha256(path).startswith(expected.lower())


def _download(weights: PretrainedWeights, target: pathlib.Path) -> None:
  """Downloads `weights.url` to `target` (atomically: a temporary file renamed once complete and verified)."""
  target.parent.mkdir(parents=True, exist_ok=True)
  handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
  try:
    with os.fdopen(handle, "wb") as out, urllib.request.urlopen(weights.url, timeout=_TIMEOUT_S) as response:
      total = int(response.headers.get("Content-Length") or 0) or None
      with tqdm.tqdm(total=total, unit="B", unit_scale=True, desc=f"download {weights.file_name}") as bar:
        for chunk in iter(lambda: response.read(_CHUNK), b""):
          out.write(chunk)
          bar.update(len(chunk))
    if not verify_sha256(temporary, weights.sha256):
      raise PretrainedDownloadError(
          f"{weights.url}: the downloaded file's SHA-256 {file_sha256(temporary)} does not match the expected "
          f"{weights.sha256}; nothing was saved. Download it yourself and place it at {target}, or set "
          "model.backbone.pretrained_backbone_path")
    os.replace(temporary, target)
  finally:
    if os.path.exists(temporary):
      os.remove(temporary)


def fetch(weights: PretrainedWeights, directory=None) -> pathlib.Path:
  """The local path of `weights`: the cached copy, else a downloaded one (once; checksum verified).

  Args:
    weights: which file (e.g. DLA34_IMAGENET).
    directory: the cache folder (default `cache_dir()`).

  Raises:
    PretrainedDownloadError: the download failed (offline, server error) or the checksum did not match; the
      message names the URL and the path to place the file at.
  """
  target = pathlib.Path(directory or cache_dir()) / weights.file_name
  for candidate in (target, _TORCH_HUB_CACHE.expanduser() / weights.file_name):
    if candidate.is_file():
      if verify_sha256(candidate, weights.sha256):
        return candidate
      logging.warning("%s: SHA-256 does not match %s; not used", candidate, weights.sha256)
  logging.warning("downloading %s from %s to %s", weights.name, weights.url, target)
  try:
    _download(weights, target)
  except PretrainedDownloadError:
    raise
  except (urllib.error.URLError, OSError) as error:  # offline, refused, HTTP error (a URLError), disk full
    raise PretrainedDownloadError(
        f"cannot download {weights.name} from {weights.url} ({getattr(error, 'reason', error)}). On a machine "
        f"without internet access, download it elsewhere and place it at {target} (or set "
        "model.backbone.pretrained_backbone_path to it)") from None
  return target
