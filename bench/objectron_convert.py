"""Objectron conversion speed: frames written per CPU-second from a 1440x1920 video.

  python bench/objectron_convert.py [--frames 119] [--strides 15 1] [--image-format jpg] [--workers 2]

Builds the Objectron-layout bottle sequence of centerpose_jax/testing/objectron_release.py (the real annotations of
bottle/batch-3/14 on a synthetic, photograph-like textured 1440x1920 MPEG-4 video; needs ../shared/fixtures or
$CENTERPOSE_FIXTURES) in a temporary folder, then converts it in this process (`convert.convert`, one sequence,
600x800 JPEGs) at each stride and prints, per stride, the frames written per CPU-second (every thread of the
process counted, so the rate per core) and per wall-clock second. It also times the pieces of the work per video
frame: decoding (every frame is decoded; the stride only skips the rest for the frames it passes over), colour
conversion, resizing to 600x800, encoding the image, and building + writing the label. With `--workers N` it
converts N copies of the sequence at stride 1 in N processes (wall clock, process start included). Real
Objectron videos are H.264/HEVC, whose decoding costs more than this MPEG-4 video's: the decode figure says how
much of the total that part is.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's package

from centerpose_jax.objectron import convert  # noqa: E402
from centerpose_jax.objectron import frames  # noqa: E402
from centerpose_jax.objectron import sequence as sequence_lib  # noqa: E402
from centerpose_jax.objectron import video as video_lib  # noqa: E402
from centerpose_jax.testing import objectron_release as fixture  # noqa: E402

FIXTURES = pathlib.Path(os.environ.get("CENTERPOSE_FIXTURES", REPO.parent / "shared" / "fixtures")) / "real"


def textured(scene):
  """`scene` with a photograph-like background: smooth random colour blobs plus fine noise."""
  rng = np.random.default_rng(0)
  blobs = cv2.resize(rng.integers(0, 256, (scene.height // 32, scene.width // 32, 3), dtype=np.uint8),
                     (scene.width, scene.height), interpolation=cv2.INTER_CUBIC)
  noise = rng.integers(-12, 13, (scene.height, scene.width, 3))
  return dataclasses.replace(scene, texture=np.clip(blobs.astype(np.int64) + noise, 0, 255).astype(np.uint8))


def _timed(function):
  """(result, CPU seconds, wall seconds) of `function()`."""
  cpu, wall = time.process_time(), time.perf_counter()
  result = function()
  return result, time.process_time() - cpu, time.perf_counter() - wall


def measure_strides(src, out, strides, image_format):
  rows = {}
  for stride in strides:
    options = convert.Options(frame_stride=stride, image_format=image_format)
    summary, cpu, wall = _timed(lambda: convert.convert(src, "bottle", "train", out / f"stride{stride}",
                                                        options=options, progress=False))
    assert summary["units"]["converted"] == 1, summary
    rows[f"stride {stride}"] = {"frames": summary["frames"], "frames_per_cpu_second": round(summary["frames"] / cpu, 2),
                                "frames_per_second": round(summary["frames"] / wall, 2)}
  return rows


def measure_pieces(src, scene, image_format):
  """CPU milliseconds of each piece of the work per video frame, in one thread (so that each piece's time is
  its own: a multi-threaded decoder works ahead while the other pieces run), streaming through the video once."""
  video = src / "videos" / fixture.SEQUENCE_ID / "video.MOV"
  sequence = sequence_lib.read_sequence(src / "annotations" / f"{fixture.SEQUENCE_ID}.pbdata")
  params = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_format == "jpg" else []
  folder = pathlib.Path(tempfile.mkdtemp())
  pieces = dict.fromkeys(("decode (grab)", "colour conversion (retrieve)", "resize to 600x800",
                          f"{image_format} encode", "label (build + write JSON)"), 0.0)
  threads = cv2.getNumThreads()
  cv2.setNumThreads(1)
  capture = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
  clock = time.process_time()

  def lap(name):
    nonlocal clock
    now = time.process_time()
    pieces[name] += now - clock
    clock = now

  for index in range(len(scene.views)):
    capture.grab()
    lap("decode (grab)")
    _, image = capture.retrieve()
    lap("colour conversion (retrieve)")
    image = cv2.resize(image, (600, 800), interpolation=cv2.INTER_AREA)
    lap("resize to 600x800")
    cv2.imencode(f".{image_format}", image, params)
    lap(f"{image_format} encode")
    frame = sequence_lib.annotated_frame(sequence, index, fixture.SEQUENCE_ID, "bottle")
    label = frames.frame_label(frame, 600, 800, [frames.object_label(obj, 600, 800) for obj in frame.objects])
    (folder / f"{index:05d}.json").write_text(json.dumps(label, indent=1))
    lap("label (build + write JSON)")
  capture.release()
  cv2.setNumThreads(threads)
  return {name: round(1000 * seconds / len(scene.views), 2) for name, seconds in pieces.items()}


def measure_workers(src, out, workers, image_format):
  """Converts `workers` copies of the whole sequence at stride 1 in as many processes (wall clock)."""
  names = [f"bottle/batch-1/{number}" for number in range(workers)]
  fixture.write_release(src / "parallel", textured(fixture.bottle_scene(FIXTURES)), names)
  options = convert.Options(frame_stride=1, image_format=image_format)
  summary, _, wall = _timed(lambda: convert.convert(src / "parallel", "bottle", "train", out / "parallel",
                                                    options=options, workers=workers, progress=False))
  return {"workers": workers, "sequences": workers, "frames": summary["frames"],
          "frames_per_second (wall, incl. process start)": round(summary["frames"] / wall, 2)}


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--frames", type=int, default=119, help="video length (at most the fixture's 119)")
  parser.add_argument("--strides", type=int, nargs="+", default=[15, 1])
  parser.add_argument("--image-format", default="jpg", choices=convert.IMAGE_FORMATS)
  parser.add_argument("--workers", type=int, default=0, help="also convert this many sequences in parallel")
  args = parser.parse_args()
  if not (FIXTURES / fixture.FIXTURE).is_file():
    raise SystemExit(f"{FIXTURES / fixture.FIXTURE} not found: set CENTERPOSE_FIXTURES")
  with tempfile.TemporaryDirectory() as folder:
    root = pathlib.Path(folder)
    scene = textured(fixture.bottle_scene(FIXTURES, num_frames=args.frames))
    _, _, write_seconds = _timed(lambda: fixture.write_release(root / "src", scene))
    report = {"video": f"{scene.width}x{scene.height}, {len(scene.views)} frames, MPEG-4 (mp4v), written in "
                       f"{write_seconds:.1f} s", "image_format": args.image_format,
              "convert": measure_strides(root / "src", root / "out", args.strides, args.image_format),
              "cpu_ms_per_video_frame": measure_pieces(root / "src", scene, args.image_format)}
    if args.workers:
      report["parallel"] = measure_workers(root / "src", root / "out", args.workers, args.image_format)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
