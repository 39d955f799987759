"""Tracking on video: pose jitter, 3D IoU AP@0.5 and ID switches, per-frame against tracked output.

  .venv/bin/python bench/tracking_jitter.py                    # after `make demo` (uses results/demo/train)
  .venv/bin/python bench/tracking_jitter.py --checkpoint DIR --out results/tracking_bench

Renders synthetic camera sequences (`synthetic.generate_sequences`, camera category, 256x256 and 30 fps) in
three sets: one still object (as the demo's training frames), one object driving along the ground, two still
objects (the demo model was trained on one object per frame, so it finds fewer of these). Each sequence's mp4 goes through infer.py's video path (`tasks.infer.run`, poses in the Objectron OpenGL frame as
the labels) twice, with `inference.tracking.enabled` off and on, and every frame is scored against its label:

  * jitter: the frame-to-frame change of the pose error, i.e. the part of the frame-to-frame pose change that
    the ground truth does not explain. For a ground-truth object matched in frames k and k + 1 (the evaluator's
    matching), translation jitter |(t_k+1 - t_k) h - (g_k+1 - g_k)| with t the predicted centre (relative-scale
    units), h the object's true height in metres and g the true centre; rotation jitter the angle of
    (G_k^T R_k)^T (G_k+1^T R_k+1), the change of the rotation error in the object frame. RMS and median over
    all such pairs.
  * 3D IoU AP@0.5 (the evaluator's default mode, every frame of every sequence pooled).
  * ID switches: for each ground-truth object, how often the track matched to it differs from the last track
    matched to it; per 100 frames.
The time `Tracker.update` alone takes on the per-frame detections is printed too. Then the real clip
(../shared/fixtures/real/shoe_objectron_clip.mp4, 600x800, 125 frames, the fixture README's intrinsics) runs
through the same path with tracking off and on, and the frames per second are printed (infer.py's figure: from
the model's set-up, so the first call's compilation is included).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.data import synthetic
from centerpose_jax.evaluation.evaluator import Evaluator
from centerpose_jax.inference import output as output_lib
from centerpose_jax.inference import tracking
from centerpose_jax.tasks import infer as infer_task
from configs import demo

_REPO = pathlib.Path(__file__).resolve().parents[1]
# The fixture README's intrinsics of the real Objectron frames and clip (pixels).
_CLIP_INTRINSICS = {"focal_length_x": 663.0287679036459, "focal_length_y": 663.0287679036459,
                    "principle_point_x": 300.2775065104167, "principle_point_y": 395.00066121419275}
# (name, objects per sequence, whether the first object drives).
_SETS = (("still", 1, False), ("moving", 1, True), ("two objects", 2, False))


def _config(checkpoint, video, results_dir, tracking, overrides=()):
  config = demo.get_config()
  config.inference.checkpoint = str(checkpoint)
  config.dataset.inference_data = str(video)
  config.results_dir = str(results_dir)
  config.inference.opencv = False  # the labels' frame
  config.inference.tracking.enabled = tracking
  for override in overrides:
    key, value = override.split("=", 1)
    field = config.inference.tracking[key]
    config.inference.tracking[key] = type(field)(value)
  return config


def _infer(config):
  """(records of the video's JSONL, frames per second of the whole run)."""
  summary = infer_task.run(config)
  video = pathlib.Path(config.dataset.inference_data)
  lines = (pathlib.Path(summary["output_dir"]) / f"{video.stem}.jsonl").read_text().splitlines()
  return [json.loads(line) for line in lines], summary["images_per_second"]




class _Score:
  """Accumulates one way of output (per-frame or tracked) over sequences."""

  def __init__(self):
    self.evaluator = Evaluator()
    self.translation_jitter, self.rotation_jitter = [], []
    self.id_switches = 0
    self.frames = 0

  def add_sequence(self, records, labels, tracked):
    previous = {}  # ground-truth index -> (frame, rotation, centre, track id) of its last match
    for record, label in zip(records, labels):
      self.frames += 1
      detections = output_lib.detections_from_record(record, filtered=tracked)  # OpenGL frame
      row = self.evaluator.add_frame(detections, label)
      for scored, detection in zip(row["predictions"], detections):
        if scored["status"] != "matched":
          continue
        rotation = geometry.quaternion_to_matrix(detection.pose.quaternion_xyzw)
        centre = detection.pose.location
        truth = label["objects"][scored["matched_gt"]]
        gt_rotation = geometry.quaternion_to_matrix(truth["quaternion_xyzw"])
        gt_centre, height = np.asarray(truth["location"]), truth["scale"][1]
        last = previous.get(scored["matched_gt"])
        if last is not None and last[0] == record["frame"] - 1:
          _, last_rotation, last_centre, last_gt_rotation, last_gt_centre, _ = last
          self.translation_jitter.append(np.linalg.norm(
              (centre - last_centre) * height - (gt_centre - last_gt_centre)))
          self.rotation_jitter.append(geometry.rotation_angle(last_gt_rotation.T @ last_rotation,
                                                              gt_rotation.T @ rotation))
        track_id = detection.track_id
        if last is not None and tracked and last[5] != track_id:
          self.id_switches += 1
        previous[scored["matched_gt"]] = (record["frame"], rotation, centre, gt_rotation, gt_centre, track_id)

  def figures(self) -> dict:
    results = self.evaluator.finalize()
    translation_mm = 1000 * np.asarray(self.translation_jitter)
    rotation_deg = np.rad2deg(self.rotation_jitter)
    return {"ap": results["headline"]["3DIoU_AP@0.5"], "mpe": results["headline"]["2DMPE"],
            "matched": results["num_matched"], "ground_truth": results["num_gt"],
            "pairs": len(translation_mm),
            "translation_rms_mm": float(np.sqrt(np.mean(translation_mm ** 2))),
            "translation_median_mm": float(np.median(translation_mm)),
            "rotation_rms_deg": float(np.sqrt(np.mean(rotation_deg ** 2))),
            "rotation_median_deg": float(np.median(rotation_deg)),
            "id_switches_per_100_frames": 100.0 * self.id_switches / max(self.frames, 1)}


def _labels(sequence_folder):
  return [json.loads(path.read_text()) for path in sorted(sequence_folder.glob("*.json"))]


def _print_table(rows):
  header = ("set", "output", "AP@0.5", "2D MPE", "matched/GT", "transl. jitter RMS / median mm",
            "rot. jitter RMS / median deg", "ID switches / 100 frames")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for name, output, f in rows:
    print(f"| {name} | {output} | {f['ap']:.3f} | {f['mpe']:.4f} | {f['matched']}/{f['ground_truth']} | "
          f"{f['translation_rms_mm']:.1f} / {f['translation_median_mm']:.1f} | "
          f"{f['rotation_rms_deg']:.2f} / {f['rotation_median_deg']:.2f} | "
          + (f"{f['id_switches_per_100_frames']:.2f}" if output == "tracked" else "-") + " |")


def _tracker_seconds(config, records, camera_k, fps, frame_shape) -> float:
  """Seconds `Tracker.update` takes over the per-frame detections of one video (the tracking alone)."""
  tracker = tracking.Tracker.for_video(config, camera_k, fps, frame_shape)
  frames = [(record["frame"], output_lib.detections_from_record(record)) for record in records]
  start = time.perf_counter()
  for frame, detections in frames:
    tracker.update(frame, detections)
  return time.perf_counter() - start


def bench_sequences(args, work):
  rows = []
  totals = {"per-frame": _Score(), "tracked": _Score()}
  tracker_seconds, frames, detections = 0.0, 0, 0
  for name, objects, moving in _SETS:
    data = work / "data" / name.replace(" ", "_")
    synthetic.generate_sequences(data, "camera", args.sequences, args.frames, seed=args.seed, width=256,
                                 height=256, max_objects=objects, moving_object=moving, skip_existing=True,
                                 workers=args.workers)
    scores = {"per-frame": _Score(), "tracked": _Score()}
    for sequence in range(args.sequences):
      video = data / synthetic.SEQUENCES_FOLDER / f"{sequence:04d}.mp4"
      labels = _labels(video.with_suffix(""))
      for output, tracked in (("per-frame", False), ("tracked", True)):
        config = _config(args.checkpoint, video, data / "runs" / output, tracked, args.tracking)
        records, _ = _infer(config)
        scores[output].add_sequence(records, labels, tracked)
        totals[output].add_sequence(records, labels, tracked)
        if not tracked:  # time the tracker alone on these detections
          camera = json.loads(video.with_suffix(".json").read_text())["camera_data"]["intrinsics"]
          camera_k = geometry.camera_matrix(camera["fx"], camera["fy"], camera["cx"], camera["cy"])
          tracker_seconds += _tracker_seconds(config, records, camera_k, 30.0, (256, 256, 3))
          frames += len(records)
          detections += sum(len(record["objects"]) for record in records)
    rows += [(name, output, score.figures()) for output, score in scores.items()]
  rows += [("all", output, score.figures()) for output, score in totals.items()]
  _print_table(rows)
  per_frame, tracked = rows[-2][2], rows[-1][2]
  print(f"tracked / per-frame over all sequences: translation jitter RMS "
        f"{tracked['translation_rms_mm'] / per_frame['translation_rms_mm']:.2f}, rotation jitter RMS "
        f"{tracked['rotation_rms_deg'] / per_frame['rotation_rms_deg']:.2f}; AP@0.5 {per_frame['ap']:.3f} -> "
        f"{tracked['ap']:.3f}")
  print(f"tracker alone (association + filters, one core's share): {1000 * tracker_seconds / frames:.2f} ms per "
        f"frame, {1000 * tracker_seconds / max(detections, 1):.2f} ms per detection ({frames} frames, "
        f"{detections} detections)")
  return rows


def bench_clip(args, work):
  clip = pathlib.Path(args.clip)
  if not clip.is_file():
    print(f"real clip {clip} not found: skipped")
    return
  for output, tracked in (("per-frame", False), ("tracked", True)):
    config = _config(args.checkpoint, clip, work / "runs" / "clip" / output, tracked, args.tracking)
    config.inference.update(_CLIP_INTRINSICS)
    start = time.perf_counter()
    records, fps = _infer(config)
    seconds = time.perf_counter() - start
    objects = sum(len(record["objects"]) for record in records)
    tracks = len({obj["track_id"] for record in records for obj in record["objects"]}) if tracked else "-"
    print(f"real clip, {output}: {len(records)} frames, {fps:.1f} frames/s in infer.py "
          f"({seconds:.1f} s with start-up), {objects} objects reported, tracks: {tracks}")


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", default=str(_REPO / "results" / "demo" / "train"),
                      help="trained demo model (checkpoint folder; default: what `make demo` writes)")
  parser.add_argument("--out", default="", help="working folder (default: a temporary one)")
  parser.add_argument("--sequences", type=int, default=6, help="sequences per set")
  parser.add_argument("--frames", type=int, default=90, help="frames per sequence")
  parser.add_argument("--seed", type=int, default=7,
                      help="sequence seed (the tracking defaults were tuned on sequences of seed 100)")
  parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
  parser.add_argument("--clip", default=str(_REPO.parent / "shared" / "fixtures" / "real" /
                                            "shoe_objectron_clip.mp4"))
  parser.add_argument("--tracking", action="append", default=[], metavar="KEY=VALUE",
                      help="override an inference.tracking option (repeatable)")
  args = parser.parse_args(argv)
  if not pathlib.Path(args.checkpoint).exists():
    print(f"no trained model at {args.checkpoint}: run `make demo` first (or pass --checkpoint); skipped")
    return 0
  if args.out:
    work = pathlib.Path(args.out)
    bench_sequences(args, work)
    bench_clip(args, work)
  else:
    with tempfile.TemporaryDirectory() as folder:
      bench_sequences(args, pathlib.Path(folder))
      bench_clip(args, pathlib.Path(folder))
  return 0


if __name__ == "__main__":
  sys.exit(main())
