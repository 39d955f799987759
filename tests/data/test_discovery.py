"""Finding image + JSON pairs: every folder, any extension case, stem-based JSON, sorted, counted; the root is
closed (links leading out are not followed) and no entry hides another."""

import json
import logging

import pytest

from centerpose_jax import errors
from centerpose_jax.data import annotations
from centerpose_jax.data import discovery


def _touch(path, text="{}"):
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def test_pairs_in_every_folder_sorted_with_missing_json_and_image_counted(tmp_path):
  for name in ("b/2.jpg", "b/2.json", "b/1.PNG", "b/1.json", "a/x.JPEG", "a/x.json", "a/y.bmp",
               "a/notes.txt", "a/z.gif", "a/z.json"):
    _touch(tmp_path / "root" / name)
  _touch(tmp_path / "root" / "top.jpg")  # beside sub-folders: used (TAO scans leaf folders only)
  _touch(tmp_path / "root" / "top.json")
  _touch(tmp_path / "root" / "settings.json")  # a folder with images: a JSON without image is listed
  _touch(tmp_path / "root" / "png_images" / "frame.png")  # TAO's str.replace would look for "json_images/..."
  _touch(tmp_path / "root" / "png_images" / "frame.json")
  _touch(tmp_path / "other" / "synthetic.json")  # no image in it, sub-folders: a settings file, not listed
  _touch(tmp_path / "other" / "leaf" / "0.png")
  _touch(tmp_path / "other" / "leaf" / "0.json")
  found = discovery.discover(tmp_path / "root")
  root = tmp_path / "root"
  assert found.pairs == [(str(root / "top.jpg"), str(root / "top.json")),
                         (str(root / "a/x.JPEG"), str(root / "a/x.json")),
                         (str(root / "b/1.PNG"), str(root / "b/1.json")),
                         (str(root / "b/2.jpg"), str(root / "b/2.json")),
                         (str(root / "png_images/frame.png"), str(root / "png_images/frame.json"))]
  assert found.images_without_json == [str(root / "a/y.bmp")]
  assert found.jsons_without_image == [str(root / "settings.json"), str(root / "a/z.json")]
  assert discovery.discover(tmp_path / "other").jsons_without_image == []


def test_no_pair_names_the_folder(tmp_path):
  _touch(tmp_path / "only_images" / "a.png")
  with pytest.raises(FileNotFoundError) as raised:
    discovery.discover(tmp_path / "only_images")
  assert isinstance(raised.value, errors.CenterPoseError)
  assert str(raised.value).startswith(f"{tmp_path / 'only_images'}: no image")
  assert str(raised.value).endswith("(1 images without JSON, 0 JSON without image, 0 links not followed)")
  with pytest.raises(FileNotFoundError, match="not a folder"):
    discovery.discover(tmp_path / "absent")


def test_dataset_root_is_closed_and_no_entry_hides_another(tmp_path, caplog):
  """Issue 15, item 2: links out of the root (an image, a JSON, a folder, a dangling one) are not followed and
  are reported once with their count; a linked sub-folder hides nothing; a link cycle is visited once."""
  root, outside = tmp_path / "root", tmp_path / "outside"
  for name in ("a/0.png", "a/0.json", "a/1.png", "a/2.json", "b/5.png", "b/5.json", "3.png", "3.json"):
    _touch(root / name)
  for name in ("1.json", "2.png", "more/9.png", "more/9.json"):
    _touch(outside / name)
  (root / "a" / "1.json").symlink_to(outside / "1.json")  # a label outside: 1.png has no label
  (root / "a" / "2.png").symlink_to(outside / "2.png")  # an image outside: 2.json has no image
  (root / "linked_out").symlink_to(outside / "more")  # a folder outside
  (root / "dangling.png").symlink_to(tmp_path / "nowhere.png")
  (root / "alias_of_b").symlink_to(root / "b")  # inside the root: scanned once, hides nothing
  (root / "b" / "loop").symlink_to(root)  # a cycle
  with caplog.at_level(logging.WARNING):
    found = discovery.discover(root)
  assert found.pairs == [(str(root / "3.png"), str(root / "3.json")), (str(root / "a/0.png"), str(root / "a/0.json")),
                         (str(root / "alias_of_b/5.png"), str(root / "alias_of_b/5.json"))]
  assert found.images_without_json == [str(root / "a/1.png")]
  assert found.jsons_without_image == [str(root / "a/2.json")]
  assert found.links_not_followed == [str(root / "a/1.json"), str(root / "a/2.png"), str(root / "dangling.png"),
                                      str(root / "linked_out")]
  warnings = [r.getMessage() for r in caplog.records if "symbolic link" in r.getMessage()]
  assert len(warnings) == 1 and warnings[0].startswith(f"{root}: 4 symbolic link(s) lead outside the dataset root")
  report = annotations.validate_source(discovery.FolderSamples(root), needs_symmetry=False, needs_evaluation=False,
                                       check_images=False)
  assert report.summary()["links_not_followed"] == 4 and report.summary()["jsons_without_image"] == 1
  assert f"{root / 'a/2.json'}: image: missing (no 2.jpg/.jpeg/.png/.bmp next to this label)" in report.problems


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
