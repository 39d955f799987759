"""Converting a category of the Objectron release into the CenterPose dataset format (docs/data-format.md).

  convert(src, "bike", "train", out)                      annotations + videos (every 15th frame, 600x800)
  convert(src, "bike", "train", out, source="records")    v1/records_shuffled tf.train.Examples

Output: `out/<split>/<unit>/<name>.jpg|png` + `<name>.json`, one folder per unit: a sequence
("bike_batch-10_3", frames named by their video frame index, "00015") or a record file (frames named
"<record index>_<sequence key>_<frame index>"). A unit is written to `out/.staging/<split>/` and moved into
place only when complete, so a rerun skips the finished ones and redoes the rest. A unit that fails (missing
or unreadable video, corrupt annotation or record file, frame count mismatch, ...) is reported and counted
and the run goes on; boxes that cannot be labelled (zero size, not 9 keypoints, ...) and undecodable records
are left out and counted by reason. The summary (also written to `out/conversion_<split>.json`) lists all.
"""

import collections
import concurrent.futures
import dataclasses
import json
import multiprocessing
import pathlib
import re
import shutil
import time
from typing import Optional, Tuple

import cv2
import numpy as np
import tqdm

from centerpose_jax import errors
from centerpose_jax.objectron import extras
from centerpose_jax.objectron import frames
from centerpose_jax.objectron import records
from centerpose_jax.objectron import release
from centerpose_jax.objectron import sequence as sequence_lib
from centerpose_jax.objectron import tfrecord
from centerpose_jax.objectron import video

SOURCES = ("videos", "records")
IMAGE_FORMATS = ("jpg", "png")
STAGING = ".staging"


@dataclasses.dataclass(frozen=True)
class Resize:
  """The written image size: `factor` times the source size (rounded), or exactly `size` (width, height)."""
  factor: float = 1 / 2.4
  size: Optional[Tuple[int, int]] = None

  @classmethod
  def parse(cls, text: str) -> "Resize":
    """From "WxH" (a size in pixels), "1/D" (divide by D) or "F" (multiply by F); e.g. "600x800", "1/2.4"."""
    text = text.strip().lower()
    size = re.fullmatch(r"(\d+)x(\d+)", text)
    if size:
      width, height = int(size.group(1)), int(size.group(2))
      if width > 0 and height > 0:
        return cls(size=(width, height))
    else:
      fraction = re.fullmatch(r"1/([0-9.]+)", text)
      try:
        factor = 1.0 / float(fraction.group(1)) if fraction else float(text)
      except (ValueError, ZeroDivisionError):
        factor = 0.0
      if 0 < factor < float("inf"):
        return cls(factor=factor)
    raise errors.CenterPoseError(f"--resize {text!r}: expected WxH (e.g. 600x800), 1/D (e.g. 1/2.4) or a "
                                 "positive factor")

  def output_size(self, width, height) -> Tuple[int, int]:
    if self.size is not None:
      return self.size
    return max(1, round(width * self.factor)), max(1, round(height * self.factor))


@dataclasses.dataclass(frozen=True)
class Options:
  """How frames are written.

  Attributes:
    frame_stride: every n-th video frame (15: CenterPose's 2 fps; 1 for tracking). Records take every frame.
    resize: the written image size (default 1/2.4: 1440x1920 -> 600x800, as NVlabs).
    image_format: "jpg" or "png".
    jpeg_quality: 1..100.
    labels: NVlabs' manual labels of the category (`extras.CategoryLabels`); empty ones add nothing.
  """
  frame_stride: int = 15
  resize: Resize = Resize()
  image_format: str = "jpg"
  jpeg_quality: int = 95
  labels: Optional[extras.CategoryLabels] = None

  def settings(self, source, category) -> dict:
    """What the written frames depend on (a rerun into the same folder must use the same)."""
    return {"source": source, "category": category, "frame_stride": self.frame_stride if source == "videos" else None,
            "resize": list(self.resize.size) if self.resize.size else self.resize.factor, "image_format": self.image_format,
            "jpeg_quality": self.jpeg_quality if self.image_format == "jpg" else None,
            "labels": self.labels.source if self.labels and self.labels.source else None}

  def check(self):
    if self.frame_stride < 1:
      raise errors.CenterPoseError(f"--frame-stride {self.frame_stride}: must be at least 1")
    if self.image_format not in IMAGE_FORMATS:
      raise errors.CenterPoseError(f"--image-format {self.image_format!r}: expected one of {IMAGE_FORMATS}")
    if not 1 <= self.jpeg_quality <= 100:
      raise errors.CenterPoseError(f"--jpeg-quality {self.jpeg_quality}: expected 1..100")


@dataclasses.dataclass(frozen=True)
class Unit:
  """One conversion job: a sequence (annotation + video) or a record file, written to `folder` via `staging`."""
  name: str
  inputs: Tuple[str, ...]
  staging: str
  folder: str
  category: str
  source: str
  sequence_id: str = ""


class _Tally:
  """What a unit wrote and left out."""

  def __init__(self):
    self.frames, self.objects, self.frames_without_plane = 0, 0, 0
    self.skipped_objects, self.skipped_frames = collections.Counter(), collections.Counter()


def write_frame(folder, stem, image, frame: frames.AnnotatedFrame, options: Options, category, tally: _Tally):
  """Writes `image` (BGR uint8 [H, W, 3], the annotation's orientation) resized, and the label of `frame`."""
  height, width = image.shape[:2]
  out_width, out_height = options.resize.output_size(width, height)
  if (out_width, out_height) != (width, height):
    shrinking = out_width * out_height < width * height
    image = cv2.resize(image, (out_width, out_height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
  labels = options.labels or extras.CategoryLabels(category)
  key = frames.sequence_key(frame.sequence)
  objects = []
  tally.skipped_objects.update(frame.skipped)
  for obj in frame.objects:
    obj, extra = labels.apply(key, obj, frame.projection)
    if obj is None:
      tally.skipped_objects["listed in bug_list.txt"] += 1
      continue
    objects.append(dict(frames.object_label(obj, out_width, out_height), **extra))
  label = frames.frame_label(frame, out_width, out_height, objects)
  tally.frames_without_plane += "AR_data" not in label
  if options.image_format == "jpg":
    path, params = pathlib.Path(folder) / f"{stem}.jpg", [cv2.IMWRITE_JPEG_QUALITY, options.jpeg_quality]
  else:
    path, params = pathlib.Path(folder) / f"{stem}.png", []
  if not cv2.imwrite(str(path), image, params):
    raise OSError(f"{path}: cannot write the image")
  path.with_suffix(".json").write_text(json.dumps(label, indent=1))
  tally.frames += 1
  tally.objects += len(objects)


def _convert_sequence(unit: Unit, options: Options, tally: _Tally):
  annotation_file, video_file = unit.inputs
  sequence = sequence_lib.read_sequence(annotation_file)
  size = sequence_lib.camera_image_size(sequence, annotation_file)
  count = len(sequence.frame_annotations)
  chosen = range(0, count, options.frame_stride)
  for index, image in video.read_frames(video_file, chosen, count, size):
    frame = sequence_lib.annotated_frame(sequence, index, unit.sequence_id, unit.category, annotation_file)
    write_frame(unit.staging, f"{index:05d}", image, frame, options, unit.category, tally)


def _convert_record_file(unit: Unit, options: Options, tally: _Tally):
  for index, data in enumerate(tfrecord.read_records(unit.inputs[0])):
    try:
      frame, encoded = records.parse_example(data, unit.category)
    except records.RecordError as error:
      tally.skipped_frames[f"unusable record: {error}"] += 1
      continue
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
      tally.skipped_frames["undecodable image/encoded"] += 1
      continue
    stem = f"{index:06d}"
    if frame.sequence:
      stem += f"_{frames.sequence_key(frame.sequence)}_{frame.frame_index:05d}"
    write_frame(unit.staging, stem, image, frame, options, unit.category, tally)


def convert_unit(unit: Unit, options: Options) -> dict:
  """Converts one unit into its staging folder and moves it into place; never raises for bad input.

  Returns:
    {"name", "status": "converted" | "failed", "reason" (failed), "frames", "objects", "frames_without_plane",
    "skipped_objects", "skipped_frames"}.
  """
  staging = pathlib.Path(unit.staging)
  shutil.rmtree(staging, ignore_errors=True)
  staging.mkdir(parents=True)
  tally = _Tally()
  try:
    if unit.source == "videos":
      _convert_sequence(unit, options, tally)
    else:
      _convert_record_file(unit, options, tally)
    if tally.frames == 0:
      raise errors.CenterPoseError(f"{unit.inputs[0]}: no frame written")
    staging.rename(unit.folder)
  except Exception as error:  # pylint: disable=broad-except  # one bad unit must not stop a long conversion
    shutil.rmtree(staging, ignore_errors=True)
    reason = str(error) if isinstance(error, (errors.CenterPoseError, OSError)) else f"{type(error).__name__}: {error}"
    return {"name": unit.name, "status": "failed", "reason": reason}
  return {"name": unit.name, "status": "converted", "frames": tally.frames, "objects": tally.objects,
          "frames_without_plane": tally.frames_without_plane, "skipped_objects": dict(tally.skipped_objects),
          "skipped_frames": dict(tally.skipped_frames)}


def list_units(src, category, split, out, source, max_sequences=None):
  """The units of (category, split) in release order, the first `max_sequences` of them when given."""
  split_folder, staging = pathlib.Path(out) / split, pathlib.Path(out) / STAGING / split
  units = []
  if source == "videos":
    for sequence_id in release.sequence_ids(src, category, split):
      name = frames.sequence_key(sequence_id)
      units.append(Unit(name=name, inputs=(str(release.annotation_path(src, sequence_id)),
                                           str(release.video_path(src, sequence_id))),
                        staging=str(staging / name), folder=str(split_folder / name), category=category,
                        source=source, sequence_id=sequence_id))
  elif source == "records":
    for path in release.record_files(src, category, split):
      units.append(Unit(name=path.name, inputs=(str(path),), staging=str(staging / path.name),
                        folder=str(split_folder / path.name), category=category, source=source))
  else:
    raise errors.CenterPoseError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
  return units[:max_sequences] if max_sequences is not None else units


def convert(src, category, split, out, *, source="videos", options: Options = Options(), max_sequences=None,
            workers=1, progress=True) -> dict:
  """Converts (category, split) of the release at `src` into `out/<split>/` (see the module docstring).

  Args:
    src: the local copy of the release (`release` describes its layout).
    category: an Objectron class (`categories.NAMES`).
    split: "train" or "test".
    out: output folder.
    source: "videos" (annotations + videos) or "records" (records_shuffled).
    options: frame stride, resize, image format, manual labels.
    max_sequences: convert only the first this many sequences (record files for `records`).
    workers: processes converting units in parallel (1: in this process).
    progress: show a progress bar over the units.

  Returns:
    The summary (also written to `out/conversion_<split>.json`): units listed / converted / already converted
    / failed (with reasons), frames and objects written, frames without an AR plane (no `AR_data`), boxes and
    records left out by reason, seconds.
  """
  options.check()
  if max_sequences is not None and max_sequences < 1:
    raise errors.CenterPoseError(f"--max-sequences {max_sequences}: must be at least 1")
  units = list_units(src, category, split, out, source, max_sequences)
  out = pathlib.Path(out)
  summary_path = out / f"conversion_{split}.json"
  settings = options.settings(source, category)
  _check_settings(summary_path, settings, out / split)
  shutil.rmtree(out / STAGING / split, ignore_errors=True)  # what an interrupted run left half-written
  (out / split).mkdir(parents=True, exist_ok=True)
  summary_path.write_text(json.dumps({"settings": settings}, indent=1))
  todo = [unit for unit in units if not pathlib.Path(unit.folder).exists()]
  summary = {"settings": settings, "split": split, "src": str(src), "out": str(out / split),
             "units": {"listed": len(units), "already_converted": len(units) - len(todo), "converted": 0,
                       "failed": 0},
             "frames": 0, "objects": 0, "frames_without_plane": 0, "skipped_objects": collections.Counter(),
             "skipped_frames": collections.Counter(), "failures": {}}
  start = time.perf_counter()
  bar = tqdm.tqdm(total=len(todo), desc=f"{category} {split}", unit="sequence" if source == "videos" else "file",
                  disable=not progress)
  for result in _run(todo, options, workers):
    if result["status"] == "failed":
      summary["units"]["failed"] += 1
      summary["failures"][result["name"]] = result["reason"]
      bar.write(f"failed: {result['name']}: {result['reason']}")
    else:
      summary["units"]["converted"] += 1
      summary["frames"] += result["frames"]
      summary["objects"] += result["objects"]
      summary["frames_without_plane"] += result["frames_without_plane"]
      summary["skipped_objects"].update(result["skipped_objects"])
      summary["skipped_frames"].update(result["skipped_frames"])
    bar.update(1)
    bar.set_postfix(frames=summary["frames"], failed=summary["units"]["failed"])
  bar.close()
  summary["seconds"] = round(time.perf_counter() - start, 3)
  summary["frames_per_second"] = round(summary["frames"] / summary["seconds"], 3) if summary["seconds"] else 0.0
  summary["skipped_objects"] = dict(summary["skipped_objects"])
  summary["skipped_frames"] = dict(summary["skipped_frames"])
  summary_path.write_text(json.dumps(summary, indent=1))
  return summary


def _check_settings(summary_path, settings, folder):
  """Refuses to add to a split folder converted with other settings (its frames would silently differ)."""
  if not summary_path.is_file():
    return
  previous = json.loads(summary_path.read_text()).get("settings", {})
  changed = sorted(key for key in settings if previous.get(key) != settings[key])
  if changed:
    raise errors.CenterPoseError(
        f"{folder} was converted with other settings ("
        + ", ".join(f"{key} {previous.get(key)!r}, now {settings[key]!r}" for key in changed)
        + "); use another --out, or the same settings to resume")


def _run(units, options, workers):
  """Yields each unit's result as it finishes."""
  if workers <= 1 or len(units) <= 1:
    for unit in units:
      yield convert_unit(unit, options)
    return
  context = multiprocessing.get_context("spawn")  # safe whatever the parent process has imported
  with concurrent.futures.ProcessPoolExecutor(min(workers, len(units)), mp_context=context) as pool:
    futures = [pool.submit(convert_unit, unit, options) for unit in units]
    for future in concurrent.futures.as_completed(futures):
      yield future.result()
