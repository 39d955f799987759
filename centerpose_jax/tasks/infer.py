"""infer.py's task: run the model over a folder, an image or a video and write the results.

For each image `results_dir/inference/` receives, with `inference.save_json`, `<stem>.json` (TAO's per-image
JSON plus `score` and `bbox`, the camera used, and the frame and unit of the poses: `output.prediction_record`)
and, with `inference.save_visualization`, `<stem>.jpg` with the cuboids drawn. A video gives an annotated
`<stem>.mp4` and one `<stem>.jsonl` (a JSON record per frame), under the same two options; with
`inference.tracking.enabled` (and `use_pnp`) its objects are the confirmed tracks, each with its `track_id` and
filtered pose (`output.tracked_record`), and the video shows the filtered poses with their ids.

Cameras (`camera.camera_for_image`): a JSON with `camera_data.intrinsics` beside an input wins; otherwise the
config's intrinsics (default: TAO's example camera). The first use of each source is printed, and a configured
principal point far from the images' centre is warned about once per image size. With `inference.use_pnp=False`
no camera is used: the 2D cuboids come from the regressed keypoints.

The JAX model runs on the devices of `inference.num_gpus` / `inference.gpu_ids` (as training), each taking
`dataset.batch_size` images of a batch.
"""

import collections
import contextlib
import json
import logging
import pathlib
import time
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np
import tqdm

from centerpose_jax import config as config_lib
from centerpose_jax import errors
from centerpose_jax.data import augment
from centerpose_jax.inference import camera as camera_lib
from centerpose_jax.inference import tracking
from centerpose_jax.inference.detection import Detection
from centerpose_jax.inference.draw import draw_detections
from centerpose_jax.inference.output import prediction_record
from centerpose_jax.inference.output import tracked_record
from centerpose_jax.inference.postprocess import postprocess_detections
from centerpose_jax.inference.predictor import create_predictor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


class VideoError(errors.CenterPoseError, ValueError):
  """A video file that cannot be opened or holds no readable frame."""


def find_images(path) -> List[pathlib.Path]:
  """Images under `path` (a folder, searched recursively, or one image file), sorted."""
  path = pathlib.Path(path)
  if path.is_file():
    return [path]
  return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class _Cameras:
  """Each input's camera (`camera.camera_for_image`), said once per source, with one warning per image size
  whose configured principal point is off-centre. Without PnP no camera is needed (None)."""

  def __init__(self, settings):
    self.settings = settings
    self.counts = collections.Counter()  # inputs per source: "config" / "image JSON"
    self._warned_sizes = set()

  def for_input(self, path, width, height) -> Optional[camera_lib.Camera]:
    if not self.settings.use_pnp:
      return None
    camera = camera_lib.camera_for_image(path, self.settings)
    kind = "config" if camera.source == camera_lib.CONFIG_SOURCE else "image JSON"
    if not self.counts[kind]:
      note = ("; inputs with camera_data in a JSON beside them use their own" if kind == "config" else
              "; other inputs with such a JSON use theirs, the rest the config's")
      tqdm.tqdm.write(f"inference: camera {camera.describe()}{note}")
    self.counts[kind] += 1
    warning = camera_lib.principal_point_warning(camera, width, height)
    if warning and (width, height) not in self._warned_sizes:
      self._warned_sizes.add((width, height))
      logging.warning(warning)
    return camera


class _Session:
  """What every batch needs: the predictor, the input size, the cameras and the post-processing settings."""

  def __init__(self, config):
    self.config = config
    self.settings = config.inference
    self.predict = create_predictor(config, "inference")
    self.input_size = config_lib.input_size(config.dataset)
    self.output_size = config_lib.output_size(config.dataset)
    self.batch_size = self.predict.batch_size or int(config.dataset.batch_size)
    self.cameras = _Cameras(self.settings)
    self.metric = self.settings.object_height > 0
    self.images = 0
    self.detections = 0

  def detect(self, frames_bgr, cameras) -> List[List[Detection]]:
    """Detections (`postprocess_detections`) of each BGR frame, with its `camera.Camera` (None: no PnP)."""
    crops = [augment.letterbox_crop(frame.shape[1], frame.shape[0], input_size=self.input_size)
             for frame in frames_bgr]
    inputs = [augment.make_input(frame, crop, self.input_size, self.config.dataset.mean, self.config.dataset.std)
              for frame, crop in zip(frames_bgr, crops)]
    decoded = self.predict(np.stack(inputs))
    results = []
    for i, (crop, camera) in enumerate(zip(crops, cameras)):
      one = {name: value[i] for name, value in decoded.items()}
      results.append(postprocess_detections(
          one, crop.center, crop.scale, self.output_size, None if camera is None else camera.matrix,
          threshold=self.settings.visualization_threshold, opencv=self.settings.opencv,
          use_pnp=self.settings.use_pnp, pnp_keypoints=self.settings.pnp_keypoints,
          object_height=self.settings.object_height))
    self.images += len(frames_bgr)
    self.detections += sum(len(r) for r in results)
    return results

  def record_options(self, camera) -> dict:
    """The options of `output.prediction_record` for an input with `camera`."""
    return {"camera": camera, "opencv": self.settings.opencv, "metric": self.metric}

  def record(self, name, detections, camera) -> dict:
    """The output JSON of one image or frame (`output.prediction_record`)."""
    return prediction_record(name, detections, **self.record_options(camera))

  def draw(self, frame_bgr, detections, camera):
    return draw_detections(frame_bgr, detections, None if camera is None else camera.matrix,
                           axis_size=self.settings.axis_size)


def _batches(items, size) -> Iterator[list]:
  for start in range(0, len(items), size):
    yield items[start:start + size]


def _run_images(session: _Session, images: List[pathlib.Path], out: pathlib.Path):
  settings = session.settings
  unreadable = []
  with tqdm.tqdm(total=len(images), unit="img", desc="infer") as bar:
    for batch in _batches(images, session.batch_size):
      frames, cameras, paths = [], [], []
      for path in batch:
        frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if frame is None:
          unreadable.append(path)
          continue
        frames.append(frame)
        cameras.append(session.cameras.for_input(path, frame.shape[1], frame.shape[0]))
        paths.append(path)
      if frames:
        for path, frame, camera, detections in zip(paths, frames, cameras, session.detect(frames, cameras)):
          if settings.save_json:
            record = session.record(path.name, detections, camera)
            (out / f"{path.stem}.json").write_text(json.dumps(record, sort_keys=True, indent=4))
          if settings.save_visualization:
            cv2.imwrite(str(out / f"{path.stem}.jpg"), session.draw(frame, detections, camera))
      bar.update(len(batch))
  for path in unreadable:
    logging.warning("could not decode %s; skipped", path)
  return len(unreadable)


def _video_frames(path) -> Iterator[Tuple[int, np.ndarray]]:
  capture = cv2.VideoCapture(str(path))
  if not capture.isOpened():
    raise VideoError(f"{path}: cannot open the video (damaged, or a codec OpenCV cannot read)")
  index = 0
  try:
    while True:
      ok, frame = capture.read()
      if not ok:
        if index == 0:
          raise VideoError(f"{path}: no frame could be read (damaged, or a codec OpenCV cannot read)")
        return
      yield index, frame
      index += 1
  finally:
    capture.release()


def _run_video(session: _Session, video: pathlib.Path, out: pathlib.Path):
  settings = session.settings
  capture = cv2.VideoCapture(str(video))
  fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
  total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
  size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
  capture.release()
  camera = session.cameras.for_input(video, *size)
  writer = tracker = None
  tracked_video = settings.tracking.enabled and settings.use_pnp
  if settings.tracking.enabled and not settings.use_pnp:
    logging.warning("inference.tracking needs poses (inference.use_pnp); %s is processed frame by frame", video)
  frames = _video_frames(video)
  with contextlib.ExitStack() as stack:
    records = stack.enter_context(open(out / f"{video.stem}.jsonl", "w")) if settings.save_json else None
    bar = stack.enter_context(tqdm.tqdm(total=total, unit="frame", desc="infer"))
    while True:
      batch = [item for _, item in zip(range(session.batch_size), frames)]
      if not batch:
        break
      for (index, frame), detections in zip(batch, session.detect([f for _, f in batch], [camera] * len(batch))):
        name = f"{video.name}#{index:06d}"
        if tracker is None and tracked_video:
          tracker = tracking.Tracker.for_video(session.config, camera.matrix, fps, frame.shape)
        if tracker is not None:
          tracked = tracker.update(index, detections)
          detections = [t.as_detection() for t in tracked]
        if records is not None:
          record = (session.record(name, detections, camera) if tracker is None else
                    tracked_record(name, tracked, **session.record_options(camera)))
          record["frame"] = index
          records.write(json.dumps(record, sort_keys=True) + "\n")
        if settings.save_visualization:
          if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(out / f"{video.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (width, height))
          writer.write(session.draw(frame, detections, camera))
      bar.update(len(batch))
  if writer is not None:
    writer.release()


def run(config) -> dict:
  """Runs inference as configured (see the module docstring); returns the summary it prints."""
  source = pathlib.Path(config.dataset.inference_data)
  is_video = source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS
  # The input and the intrinsics (CameraError) are checked before the weights are loaded.
  if is_video:
    next(_video_frames(source))  # VideoError without a readable frame
    inputs = [source]
  else:
    inputs = images = find_images(source)
    if not images:
      raise errors.InputNotFoundError(f"dataset.inference_data: no images ({', '.join(IMAGE_EXTENSIONS)}) in "
                                      f"{source} or its sub-folders")
  if config.inference.use_pnp:
    for path in inputs:
      camera_lib.camera_for_image(path, config.inference)
  out = config_lib.task_results_dir(config, "inference")
  out.mkdir(parents=True, exist_ok=True)
  session = _Session(config)
  start = time.perf_counter()
  unreadable = 0
  if is_video:
    _run_video(session, source, out)
  else:
    unreadable = _run_images(session, images, out)
  seconds = time.perf_counter() - start
  summary = {"images": session.images, "detections": session.detections, "unreadable": unreadable,
             "seconds": round(seconds, 3), "images_per_second": round(session.images / max(seconds, 1e-9), 2),
             "cameras": dict(session.cameras.counts), "output_dir": str(out)}
  cameras = ", ".join(f"{count} from the {kind}" for kind, count in sorted(session.cameras.counts.items()))
  print(f"inference: {summary['images']} images, {summary['detections']} detections, "
        f"{summary['images_per_second']} images/s, {unreadable} unreadable"
        f"{f', cameras: {cameras}' if cameras else ''} -> {out}")
  return summary
