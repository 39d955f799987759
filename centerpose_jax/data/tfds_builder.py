"""Packed datasets: a CenterPose folder as TFDS ArrayRecord shards, and random access to them.

`pack(samples, out_dir)` writes the raw samples of a dataset folder (image file bytes, the parsed JSON label,
the image path) through a TFDS `GeneratorBasedBuilder` in the ArrayRecord file format, in the folder's order
(TFDS shuffling disabled). No TensorFlow is needed, for writing or reading. The layout is TFDS's own:

  out_dir/centerpose_samples/1.0.0/{dataset_info.json, features.json, metadata.json,
                                    centerpose_samples-<split>.array_record-0000i-of-0000n}

so `tfds.builder_from_directory(out_dir/centerpose_samples/1.0.0)` opens it too. `PackedSamples(path)` is a
random-access sequence of the same samples (index i of the packed dataset is sample i of the folder), and
`is_packed_dataset(path)` tells a packed dataset from an image folder.

  python tools/pack_dataset.py --src DIR/train --out PACKED_DIR
"""

import json
import pathlib
import tempfile
import typing

import numpy as np
import tensorflow_datasets as tfds

from centerpose_jax.data.discovery import RawSample

BUILDER_NAME = "centerpose_samples"
DEFAULT_SPLIT = "train"
_INFO_FILE = "dataset_info.json"


class CenterPoseSamples(tfds.core.GeneratorBasedBuilder):
  """TFDS builder of one split of raw CenterPose samples (image bytes, JSON text, path), in source order."""

  name = BUILDER_NAME
  VERSION = tfds.core.Version("1.0.0")
  # No code folder (and so no download checksums file). TFDS 4.9.10 otherwise imports the `importlib_resources`
  # backport on Python >= 3.9 without declaring it (tensorflow/datasets#11212).
  code_path = None
  RELEASE_NOTES = {"1.0.0": "Image file bytes, JSON label text and image path per sample."}

  def __init__(self, *, samples=(), split=DEFAULT_SPLIT, source="", **kwargs):
    self._samples = samples
    self._split = split
    self._source = str(source)
    super().__init__(**kwargs)

  def _info(self):
    return self.dataset_info_from_configs(
        description="CenterPose (TAO/Objectron format) image + JSON pairs, packed unchanged.",
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # the image file's bytes
            "annotation": tfds.features.Text(),  # the JSON label
            "path": tfds.features.Text(),
        }),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(source=self._source),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    return {self._split: self._generate_examples()}

  def _generate_examples(self):
    for index, sample in enumerate(self._samples):
      yield index, {"image": sample.image_bytes, "annotation": json.dumps(sample.annotation),
                    "path": str(sample.path)}


def pack(samples, out_dir, split=DEFAULT_SPLIT, num_shards=None, source="", overwrite=False) -> pathlib.Path:
  """Writes `samples` (a sequence of `RawSample`) as ArrayRecord shards under `out_dir`.

  Args:
    samples: the dataset's raw samples, in the order to keep.
    out_dir: the TFDS data directory to write into.
    split: TFDS split name to store them under.
    num_shards: number of shard files; None lets TFDS choose from the size.
    source: recorded in the dataset's metadata (e.g. the source folder).
    overwrite: replace an existing packed dataset instead of refusing.

  Returns:
    The dataset directory (`out_dir/centerpose_samples/<version>`).
  """
  builder = CenterPoseSamples(samples=samples, split=split, source=source, data_dir=str(out_dir),
                              file_format="array_record")
  if pathlib.Path(builder.data_dir, _INFO_FILE).exists() and not overwrite:
    raise FileExistsError(f"{builder.data_dir} already holds a packed dataset")
  mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
          else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
  with tempfile.TemporaryDirectory() as downloads:  # TFDS wants one; nothing is downloaded
    builder.download_and_prepare(
        download_dir=downloads, download_config=tfds.download.DownloadConfig(num_shards=num_shards,
                                                                             download_mode=mode))
  return pathlib.Path(builder.data_dir)


def packed_dataset_dir(path) -> typing.Optional[pathlib.Path]:
  """The TFDS dataset directory of a packed dataset at `path`, or None.

  `path` may be the dataset directory itself or the data directory given to `pack` (holding exactly one
  `<name>/<version>/` dataset).
  """
  path = pathlib.Path(path)
  if not path.is_dir():
    return None
  if _is_array_record_dataset(path):
    return path
  candidates = [info.parent for info in path.glob(f"*/*/{_INFO_FILE}") if _is_array_record_dataset(info.parent)]
  return candidates[0] if len(candidates) == 1 else None


def _is_array_record_dataset(directory) -> bool:
  info_path = directory / _INFO_FILE
  if not (info_path.is_file() and (directory / "features.json").is_file()):
    return False
  try:
    return json.loads(info_path.read_text()).get("fileFormat") == "array_record"
  except (OSError, ValueError):
    return False


def is_packed_dataset(path) -> bool:
  """Whether `path` is a packed dataset (see `packed_dataset_dir`) rather than a folder of images."""
  return packed_dataset_dir(path) is not None


class PackedSamples:
  """Random-access sequence of `RawSample`s stored by `pack` (len, integer indexing, picklable).

  The shards are opened lazily in each process, so the object can be sent to loader worker processes.
  """

  def __init__(self, path, split=None):
    directory = packed_dataset_dir(path)
    if directory is None:
      raise FileNotFoundError(f"no packed (ArrayRecord) dataset at {path}")
    self._directory = directory
    splits = list(tfds.builder_from_directory(str(directory)).info.splits)
    if split is None:
      if len(splits) != 1:
        raise ValueError(f"{directory} holds the splits {splits}; choose one")
      split = splits[0]
    elif split not in splits:
      raise ValueError(f"{directory} has no split {split!r} (it has {splits})")
    self._split = split
    self._source = None

  @property
  def directory(self) -> pathlib.Path:
    return self._directory

  def _data_source(self):
    if self._source is None:
      self._source = tfds.builder_from_directory(str(self._directory)).as_data_source(split=self._split)
    return self._source

  def __getstate__(self):
    state = dict(self.__dict__)
    state["_source"] = None
    return state

  def __len__(self) -> int:
    return len(self._data_source())

  def __getitem__(self, index) -> RawSample:
    size = len(self)
    if not -size <= index < size:
      raise IndexError(f"sample {index} out of range for {size} samples")
    record = self._data_source()[index % size]
    return RawSample(image_bytes=record["image"], annotation=json.loads(record["annotation"]),
                     path=record["path"].decode("utf-8"))

  def __repr__(self) -> str:
    return f"PackedSamples({str(self._directory)!r}, split={self._split!r})"
