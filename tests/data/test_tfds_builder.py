"""Packed (TFDS ArrayRecord) datasets: the packed samples are the folder's samples, byte for byte."""

import json
import pickle

import pytest

from centerpose_jax.data import synthetic
from centerpose_jax.data import tfds_builder


@pytest.fixture(scope="module")
def dataset_folder(tmp_path_factory):
  """A tiny synthetic dataset: train/ with 5 frames, val/ with 2."""
  root = tmp_path_factory.mktemp("synthetic")
  synthetic.generate_dataset(root, "camera", num_train=5, num_val=2, seed=3, width=64, height=80)
  return root


def _file_samples(folder):
  """The raw samples of a flat folder of NNNNNN.png + .json pairs, read straight from the files."""
  return [tfds_builder.RawSample(path.read_bytes(), json.loads(path.with_suffix(".json").read_text()), str(path))
          for path in sorted(folder.glob("*.png"))]


@pytest.fixture(scope="module")
def packed(dataset_folder, tmp_path_factory):
  out = tmp_path_factory.mktemp("packed")
  samples = _file_samples(dataset_folder / "train")
  tfds_builder.pack(samples, out, num_shards=2, source=dataset_folder / "train")
  return out, samples


def test_packed_samples_are_the_folder_samples(packed):
  out, samples = packed
  reader = tfds_builder.PackedSamples(out)
  assert len(reader) == len(samples) == 5
  for index, sample in enumerate(samples):
    restored = reader[index]
    assert restored.image_bytes == sample.image_bytes
    assert restored.annotation == sample.annotation
    assert restored.path == sample.path
  assert reader[-1] == samples[-1]
  with pytest.raises(IndexError):
    reader[len(samples)]


def test_shards_are_written_in_tfds_layout(packed):
  out, _ = packed
  directory = tfds_builder.packed_dataset_dir(out)
  assert directory == out / tfds_builder.BUILDER_NAME / "1.0.0"
  assert len(list(directory.glob("*.array_record-*-of-00002"))) == 2
  info = json.loads((directory / "dataset_info.json").read_text())
  assert info["fileFormat"] == "array_record"
  assert [split["name"] for split in info["splits"]] == [tfds_builder.DEFAULT_SPLIT]


def test_is_packed_dataset(packed, dataset_folder, tmp_path):
  out, _ = packed
  assert tfds_builder.is_packed_dataset(out)
  assert tfds_builder.is_packed_dataset(tfds_builder.packed_dataset_dir(out))
  assert not tfds_builder.is_packed_dataset(dataset_folder / "train")
  assert not tfds_builder.is_packed_dataset(dataset_folder)
  assert not tfds_builder.is_packed_dataset(tmp_path / "missing")
  with pytest.raises(FileNotFoundError):
    tfds_builder.PackedSamples(dataset_folder)


def test_reader_survives_pickling_for_worker_processes(packed):
  out, samples = packed
  reader = tfds_builder.PackedSamples(out)
  assert reader[0] == samples[0]  # opened before pickling
  clone = pickle.loads(pickle.dumps(reader))
  assert [clone[index] for index in range(len(clone))] == samples


def test_existing_dataset_is_kept_unless_overwritten(packed, dataset_folder):
  out, samples = packed
  with pytest.raises(FileExistsError):
    tfds_builder.pack(samples[:1], out)
  assert len(tfds_builder.PackedSamples(out)) == len(samples)
  val_out = out.parent / "val_packed"
  tfds_builder.pack(_file_samples(dataset_folder / "val"), val_out, split="validation")
  tfds_builder.pack(samples[:1], val_out, split="validation", overwrite=True)
  assert tfds_builder.PackedSamples(val_out)[0] == samples[0]
  assert len(tfds_builder.PackedSamples(val_out, split="validation")) == 1
  with pytest.raises(ValueError):
    tfds_builder.PackedSamples(val_out, split="train")
