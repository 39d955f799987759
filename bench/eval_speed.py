"""Evaluation speed on one CPU core: 3D IoU pairs per second, and the time to evaluate 1,000 frames.

  .venv/bin/python bench/eval_speed.py

Inputs are the TAO reference fixtures (../shared/fixtures, or $CENTERPOSE_FIXTURES):
  * 3D IoU: the 300 pairs of tao_reference/iou3d (random, noisy, thin and edge cases), repeated. Reported
    for `iou_3d_batch` in chunks of 256 pairs (the evaluator's path) and for one `iou_3d` call per pair.
  * Evaluator: the 20 frames of tao_reference/evaluator with their stored predictions, replayed cyclically
    to 1,000 frames (34 predictions per 20 frames), JSON already parsed and made `Detection`s, add_frame +
    finalize.
The process is pinned to one core and BLAS to one thread before numpy loads.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json  # noqa: E402  (after the thread settings)
import pathlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from centerpose_jax.evaluation import box3d  # noqa: E402
from centerpose_jax.evaluation import evaluator  # noqa: E402
from centerpose_jax.testing.detections import from_tao_predictions  # noqa: E402

_REPO = pathlib.Path(__file__).resolve().parents[1]
_CHUNK = 256
_FRAMES = 1000


def _fixtures() -> pathlib.Path:
  return pathlib.Path(os.environ.get("CENTERPOSE_FIXTURES", _REPO.parent / "shared" / "fixtures")) / "tao_reference"


def _best_seconds(function, repeats=3) -> float:
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    function()
    best = min(best, time.perf_counter() - start)
  return best


def bench_iou(root):
  pairs = json.loads((root / "iou3d" / "iou3d_pairs.json").read_text())
  boxes_a = np.array([pair["box_pred"] for pair in pairs])
  boxes_b = np.array([pair["box_gt"] for pair in pairs])
  many_a, many_b = np.tile(boxes_a, (10, 1, 1)), np.tile(boxes_b, (10, 1, 1))

  def batched():
    for start in range(0, len(many_a), _CHUNK):
      box3d.iou_3d_batch(many_a[start:start + _CHUNK], many_b[start:start + _CHUNK])

  def one_by_one():
    for box_a, box_b in zip(boxes_a, boxes_b):
      box3d.iou_3d(box_a, box_b)

  print(f"3D IoU, iou_3d_batch (chunks of {_CHUNK}): {len(many_a) / _best_seconds(batched):8.0f} pairs/s")
  print(f"3D IoU, iou_3d one call per pair:      {len(boxes_a) / _best_seconds(one_by_one):8.0f} pairs/s")


def bench_evaluator(root):
  entries = json.loads((root / "evaluator" / "predictions.json").read_text())
  frames = [(from_tao_predictions(entry["predictions"]), json.loads((root / "evaluator" / entry["gt_json"]).read_text()))
            for entry in entries]
  for tao_compatible, num_symmetry in ((False, 1), (True, 1), (False, 12)):

    def run():
      scorer = evaluator.Evaluator(num_symmetry=num_symmetry, tao_compatible=tao_compatible)
      for i in range(_FRAMES):
        predictions, annotation = frames[i % len(frames)]
        scorer.add_frame(predictions, annotation, image_id=i)
      scorer.finalize()

    seconds = _best_seconds(run, repeats=2)
    mode = "TAO-compatible" if tao_compatible else "default"
    print(f"Evaluator, {_FRAMES} frames, {mode:14s} eval_num_symmetry {num_symmetry:2d}: {seconds:6.2f} s "
          f"({_FRAMES / seconds:6.0f} frames/s)")


def main():
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
  root = _fixtures()
  bench_iou(root)
  bench_evaluator(root)


if __name__ == "__main__":
  main()
