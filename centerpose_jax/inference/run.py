"""infer.py's library side: run the model over a folder, an image or a video and write the results.

For each image `results_dir/inference/` receives `<stem>.json` (TAO's per-image JSON plus `score` and
`bbox`) and, with `inference.save_visualization`, `<stem>.jpg` with the cuboids drawn. A video gives an
annotated `<stem>.mp4` and one `<stem>.jsonl` (a JSON record per frame); with `inference.tracking.enabled`
(and `use_pnp`) its objects are the confirmed tracks, each with its `track_id` and filtered pose
(`output.tracked_record`), and the video shows the filtered poses with their ids.
"""

import json
import logging
import pathlib
import time
from typing import Iterator, List, Tuple

import cv2
import numpy as np
import tqdm

from centerpose_jax import config as config_lib
from centerpose_jax.data import transforms
from centerpose_jax.inference import camera as camera_lib
from centerpose_jax.inference import tracking
from centerpose_jax.inference.draw import draw_detections
from centerpose_jax.inference.output import prediction_record
from centerpose_jax.inference.output import tracked_record
from centerpose_jax.inference.postprocess import postprocess_detections
from centerpose_jax.inference.predictor import create_predictor

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def find_images(path) -> List[pathlib.Path]:
  """Images under `path` (a folder, searched recursively, or one image file), sorted."""
  path = pathlib.Path(path)
  if path.is_file():
    return [path]
  return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class _Session:
  """What every batch needs: the predictor, the input size and the post-processing settings."""

  def __init__(self, config):
    self.config = config
    self.settings = config.inference
    self.predict = create_predictor(config, "inference")
    self.input_size = (config.dataset.input_res, config.dataset.input_res)
    self.output_size = (config.dataset.input_res // 4, config.dataset.input_res // 4)
    self.batch_size = config.dataset.batch_size
    self.images = 0
    self.detections = 0

  def detect(self, frames_bgr, cameras) -> List[list]:
    """Detections (see `postprocess_detections`) of each BGR frame, with its [3, 3] camera matrix."""
    prepared = [transforms.preprocess_image(frame, self.input_size, self.config.dataset.mean,
                                            self.config.dataset.std) for frame in frames_bgr]
    decoded = self.predict(np.stack([p[0] for p in prepared]))
    results = []
    for i, (_, center, scale) in enumerate(prepared):
      one = {name: value[i] for name, value in decoded.items()}
      results.append(postprocess_detections(
          one, center, scale, self.output_size, cameras[i], threshold=self.settings.visualization_threshold,
          opencv=self.settings.opencv, use_pnp=self.settings.use_pnp,
          pnp_keypoints=self.settings.pnp_keypoints))
    self.images += len(frames_bgr)
    self.detections += sum(len(r) for r in results)
    return results

  def draw(self, frame_bgr, detections, camera_k):
    return draw_detections(frame_bgr, detections, camera_k, axis_size=self.settings.axis_size,
                           opencv=self.settings.opencv)


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
        cameras.append(camera_lib.camera_for_image(path, settings))
        paths.append(path)
      if frames:
        for path, frame, camera_k, detections in zip(paths, frames, cameras, session.detect(frames, cameras)):
          if settings.save_json:
            record = prediction_record(path.name, detections)
            (out / f"{path.stem}.json").write_text(json.dumps(record, sort_keys=True, indent=4))
          if settings.save_visualization:
            cv2.imwrite(str(out / f"{path.stem}.jpg"), session.draw(frame, detections, camera_k))
      bar.update(len(batch))
  for path in unreadable:
    logging.warning("could not decode %s; skipped", path)
  return len(unreadable)


def _video_frames(path) -> Iterator[Tuple[int, np.ndarray]]:
  capture = cv2.VideoCapture(str(path))
  if not capture.isOpened():
    raise ValueError(f"{path}: cannot open the video")
  index = 0
  try:
    while True:
      ok, frame = capture.read()
      if not ok:
        return
      yield index, frame
      index += 1
  finally:
    capture.release()


def _run_video(session: _Session, video: pathlib.Path, out: pathlib.Path):
  settings = session.settings
  camera_k = camera_lib.camera_for_image(video, settings)
  capture = cv2.VideoCapture(str(video))
  fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
  total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
  capture.release()
  writer = tracker = None
  tracked_video = settings.tracking.enabled and settings.use_pnp
  if settings.tracking.enabled and not settings.use_pnp:
    logging.warning("inference.tracking needs poses (inference.use_pnp); %s is processed frame by frame", video)
  frames = _video_frames(video)
  with open(out / f"{video.stem}.jsonl", "w") as records, tqdm.tqdm(total=total, unit="frame",
                                                                      desc="infer") as bar:
    while True:
      batch = [item for _, item in zip(range(session.batch_size), frames)]
      if not batch:
        break
      for (index, frame), detections in zip(batch, session.detect([f for _, f in batch],
                                                                  [camera_k] * len(batch))):
        name = f"{video.name}#{index:06d}"
        if tracker is None and tracked_video:
          tracker = tracking.Tracker.for_video(session.config, camera_k, fps, frame.shape)
        if tracker is None:
          record = prediction_record(name, detections)
        else:
          tracked = tracker.update(index, detections)
          record, detections = tracked_record(name, tracked), [t.as_detection() for t in tracked]
        record["frame"] = index
        records.write(json.dumps(record, sort_keys=True) + "\n")
        if settings.save_visualization:
          if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(out / f"{video.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                     (width, height))
          writer.write(session.draw(frame, detections, camera_k))
      bar.update(len(batch))
  if writer is not None:
    writer.release()


def infer(config) -> dict:
  """Runs inference as configured (see the module docstring); returns the summary it prints."""
  source = pathlib.Path(config.dataset.inference_data)
  out = config_lib.task_results_dir(config, "inference")
  out.mkdir(parents=True, exist_ok=True)
  session = _Session(config)
  start = time.perf_counter()
  unreadable = 0
  if source.is_file() and source.suffix.lower() in VIDEO_EXTENSIONS:
    _run_video(session, source, out)
  else:
    images = find_images(source)
    if not images:
      raise FileNotFoundError(f"dataset.inference_data: no images ({', '.join(IMAGE_EXTENSIONS)}) in {source}")
    unreadable = _run_images(session, images, out)
  seconds = time.perf_counter() - start
  summary = {"images": session.images, "detections": session.detections, "unreadable": unreadable,
             "seconds": round(seconds, 3), "images_per_second": round(session.images / max(seconds, 1e-9), 2),
             "output_dir": str(out)}
  print(f"inference: {summary['images']} images, {summary['detections']} detections, "
        f"{summary['images_per_second']} images/s, {unreadable} unreadable -> {out}")
  return summary
