"""Issue 15, item 1: the validator checks what training reads: it decodes every image and reports unreadable,
empty, truncated, too small and mis-sized images and labels without their image, each as
`path: field: what is wrong` with exit status 1; training's check before step 0 stops with the same list, or
skips those samples with dataset.skip_invalid."""

import json

import cv2
import numpy as np
import pytest
from configs import default

from centerpose_jax.data import annotations
from centerpose_jax.data import discovery
from centerpose_jax.data import loader
from centerpose_jax.data import synthetic
from tools import validate_dataset


@pytest.fixture()
def broken(tmp_path):
  """8 synthetic frames (96x128): 6 broken in different ways, frames 6 and 7 intact."""
  synthetic.generate_dataset(tmp_path, "camera", num_train=8, num_val=0, seed=0, width=96, height=128,
                             max_objects=1)
  train = tmp_path / "train"
  images = sorted(train.glob("*.png"))
  images[0].write_bytes(images[0].read_bytes()[:300])  # truncated PNG: OpenCV cannot decode it
  images[1].write_bytes(b"")  # zero bytes
  cv2.imwrite(str(images[2]), np.zeros((1, 1, 3), np.uint8))  # 1x1
  frame = cv2.imread(str(images[3]))
  cv2.imwrite(str(images[3]), cv2.resize(frame, (192, 256)))  # not the size camera_data says
  images[4].unlink()  # its JSON is left without an image
  jpeg = images[5].with_suffix(".jpg")  # a JPEG without its 2-byte end marker
  jpeg.write_bytes(cv2.imencode(".jpg", cv2.imread(str(images[5])))[1].tobytes()[:-2])
  images[5].unlink()
  return train, images, jpeg


def test_validator_decodes_every_image_and_lists_each_problem(broken, capsys):
  train, images, jpeg = broken
  assert validate_dataset.main([str(train)]) == 1
  out = capsys.readouterr().out
  problems = out[:out.index("{")].splitlines()
  label = lambda image: image.with_suffix(".json")  # pylint: disable=unnecessary-lambda-assignment
  assert problems == [
      f"{images[0]}: image: cannot be decoded (damaged, truncated, or not a JPEG/PNG/BMP)",
      f"{images[1]}: image: empty file (0 bytes)",
      f"{images[2]}: image: 1x1 pixels, smaller than the network's stride (32 pixels)",
      f"{label(images[2])}: camera_data.width/height: 96x128, but the image {images[2]} is 1x1 pixels (the pixel "
      "labels do not fit)",
      f"{label(images[3])}: camera_data.width/height: 96x128, but the image {images[3]} is 192x256 pixels (the "
      "pixel labels do not fit)",
      f"{jpeg}: image: cannot be decoded (damaged, truncated, or not a JPEG/PNG/BMP)",
      f"{label(images[4])}: image: missing (no {images[4].stem}.jpg/.jpeg/.png/.bmp next to this label)"]
  summary = json.loads(out[out.index("{"):])
  assert (summary["images"], summary["invalid_images"], summary["unreadable_images"],
          summary["jsons_without_image"], summary["problems"]) == (7, 5, 3, 1, 7)


def test_training_check_stops_with_the_list_or_skips(broken):
  train, images, _ = broken
  dataset = default.get_config().dataset
  source = discovery.FolderSamples(train)
  with pytest.raises(annotations.DatasetError) as raised:
    loader.check_dataset(source, dataset)
  assert len(raised.value.problems) == 7 and str(images[1]) in str(raised.value)
  dataset.skip_invalid = True
  checked = loader.check_dataset(source, dataset)
  assert checked.skipped == 5
  assert [checked.source[i].path for i in range(len(checked.source))] == [str(images[6]), str(images[7])]
