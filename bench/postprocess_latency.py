"""Per-image post-processing latency (inverse affine, threshold, soft-NMS, PnP) for 10 detections.

Builds one image's decoder output (K = 100, 10 detections above the threshold, each a cuboid projected
from a known pose, with heatmap keypoints) and times `postprocess_detections` on the host.

Usage:
  .venv/bin/python bench/postprocess_latency.py [--repeats 200]
"""

import argparse
import functools
import time

import numpy as np

from centerpose_jax import geometry
from centerpose_jax.data import transforms
from centerpose_jax.inference import postprocess_detections

NUM_SELECT, NUM_DETECTIONS = 100, 10
IMAGE_W, IMAGE_H = 600, 800
OUTPUT_SIZE = (128, 128)
CAMERA_K = geometry.camera_matrix(615.05, 615.05, 300.77, 392.88)


def _decoded_image(rng):
  """Decoder outputs for one image (no batch axis), output-grid pixels."""
  center, scale = np.array([IMAGE_W / 2, IMAGE_H / 2]), float(max(IMAGE_W, IMAGE_H))
  to_grid = transforms.affine_transform_matrix(center, scale, 0.0, OUTPUT_SIZE)
  decoded = {
      "bboxes": np.zeros((NUM_SELECT, 4)), "scores": np.zeros((NUM_SELECT, 1)),
      "obj_scale": np.tile([0.7, 1.0, 0.5], (NUM_SELECT, 1)),
      "kps_displacement_mean": np.zeros((NUM_SELECT, 16)), "kps_heatmap_mean": np.full((NUM_SELECT, 16), -1e4),
  }
  decoded["scores"][:, 0] = np.concatenate([np.linspace(0.95, 0.5, NUM_DETECTIONS),
                                            np.linspace(0.25, 0.01, NUM_SELECT - NUM_DETECTIONS)])
  # Objects on a 2 x 5 grid 8 m away (no 2D overlap, so all 10 reach PnP), randomly rotated.
  grid_x, grid_y = np.meshgrid([-1.2, 1.2], np.linspace(-4.0, 4.0, NUM_DETECTIONS // 2))
  for k, (x, y) in enumerate(zip(grid_x.ravel(), grid_y.ravel())):
    rotation = geometry.quaternion_to_matrix(rng.normal(size=4))
    location = np.array([x, y, 8.0])
    corners = geometry.cuboid_vertices(decoded["obj_scale"][k])[1:] @ rotation.T + location
    pixels = geometry.project_with_intrinsics(corners, CAMERA_K)
    grid = np.asarray(transforms.apply_affine(pixels, to_grid))
    decoded["bboxes"][k] = np.concatenate([grid.min(axis=0), grid.max(axis=0)])
    decoded["kps_displacement_mean"][k] = (grid + rng.normal(scale=0.3, size=grid.shape)).reshape(-1)
    decoded["kps_heatmap_mean"][k] = (grid + rng.normal(scale=0.3, size=grid.shape)).reshape(-1)
  return {name: value.astype(np.float32) for name, value in decoded.items()}, center, scale


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=200)
  args = parser.parse_args()
  decoded, center, scale = _decoded_image(np.random.default_rng(0))
  for pnp_keypoints in ("displacement", "displacement+heatmap"):
    run = functools.partial(postprocess_detections, decoded, center, scale, OUTPUT_SIZE, CAMERA_K,
                            threshold=0.3, opencv=True, pnp_keypoints=pnp_keypoints)
    kept = len(run())
    times = []
    for _ in range(args.repeats):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    times_ms = np.array(times) * 1e3
    print(f"postprocess ({pnp_keypoints}, {NUM_DETECTIONS} detections above threshold, {kept} kept): "
          f"median {np.median(times_ms):.2f} ms/image, p90 {np.percentile(times_ms, 90):.2f} ms/image")


if __name__ == "__main__":
  main()
