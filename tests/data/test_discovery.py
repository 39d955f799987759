"""Finding image + JSON pairs: leaf folders only, any extension case, stem-based JSON, sorted, counted."""

import json

import pytest

from centerpose_jax.data import discovery


def _touch(path, text="{}"):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def test_pairs_in_leaf_folders_sorted_with_missing_json_counted(tmp_path):
  for name in ("b/2.jpg", "b/2.json", "b/1.PNG", "b/1.json", "a/x.JPEG", "a/x.json", "a/y.bmp",
               "a/notes.txt", "a/z.gif", "a/z.json"):
    _touch(tmp_path / "root" / name)
  _touch(tmp_path / "root" / "ignored.jpg")  # root has sub-folders, so its own files are not scanned
  _touch(tmp_path / "root" / "ignored.json")
  _touch(tmp_path / "root" / "png_images" / "frame.png")  # TAO's str.replace would look for "json_images/..."
  _touch(tmp_path / "root" / "png_images" / "frame.json")
  found = discovery.discover(tmp_path / "root")
  root = tmp_path / "root"
  assert found.pairs == [(str(root / "a/x.JPEG"), str(root / "a/x.json")),
                         (str(root / "b/1.PNG"), str(root / "b/1.json")),
                         (str(root / "b/2.jpg"), str(root / "b/2.json")),
                         (str(root / "png_images/frame.png"), str(root / "png_images/frame.json"))]
  assert found.images_without_json == [str(root / "a/y.bmp")]


def test_no_pair_names_the_folder(tmp_path):
  _touch(tmp_path / "only_images" / "a.png")
  with pytest.raises(FileNotFoundError) as raised:
    discovery.discover(tmp_path / "only_images")
  assert str(raised.value).startswith(f"{tmp_path / 'only_images'}: no image")
  assert str(raised.value).endswith("(1 images without JSON)")
  with pytest.raises(FileNotFoundError, match="not a folder"):
    discovery.discover(tmp_path / "absent")


def test_folder_samples_are_raw_samples(tmp_path):
  _touch(tmp_path / "s" / "0.png", "image bytes")
  _touch(tmp_path / "s" / "0.json", json.dumps({"objects": []}))
  samples = discovery.FolderSamples(tmp_path / "s")
  assert len(samples) == 1
  sample = samples[0]
  assert sample.image_bytes == b"image bytes" and sample.annotation == {"objects": []}
  assert sample.path == str(tmp_path / "s" / "0.png") and sample.json_path == str(tmp_path / "s" / "0.json")
  subset = discovery.SubsetSamples(samples, [0, 0])
  assert len(subset) == 2 and subset[1] == sample and subset.annotation(1) == {"objects": []}
