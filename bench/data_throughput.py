"""Data pipeline throughput: per-process samples/s (decode + augment + targets) and loader batches/s.

  python bench/data_throughput.py [--samples 200] [--input-res 512] [--workers 2] [--category cereal_box]

Writes 600x800 (W x H) JPEGs with 3 labelled boxes each into a temporary folder, then measures
1. `loader.encode_sample` with training augmentation (random crop, flip, colour) plus batching, in this
   process;
2. the grain `TrainLoader` with `--workers` worker processes (after its first batch, which includes worker
   start-up), at `dataset.batch_size` 4 on one device.
"""

import argparse
import json
import pathlib
import tempfile
import time

import cv2
import numpy as np

from centerpose_jax import geometry
from centerpose_jax.data import discovery
from centerpose_jax.data import loader
from configs import default

WIDTH, HEIGHT = 600, 800
FOCAL = 700.0  # pixels


def _label(rng) -> dict:
  """A CenterPose label with 3 boxes 1.5-3 m in front of a pinhole camera (OpenCV frame projected with K)."""
  camera_k = geometry.camera_matrix(FOCAL, FOCAL, WIDTH / 2, HEIGHT / 2)
  objects = []
  for _ in range(3):
    size = rng.uniform(0.2, 0.5, 3)
    rotation = geometry.quaternion_to_matrix(geometry.matrix_to_quaternion(
        cv2.Rodrigues(rng.uniform(-0.6, 0.6, 3))[0]))
    location = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.5, 0.5), rng.uniform(1.5, 3.0)])
    points_cv = geometry.cuboid_vertices(size) @ rotation.T + location
    objects.append({"projected_cuboid": geometry.project_with_intrinsics(points_cv, camera_k).tolist(),
                    "scale": size.tolist()})
  return {"camera_data": {"intrinsics": {"fx": FOCAL, "fy": FOCAL, "cx": WIDTH / 2, "cy": HEIGHT / 2},
                          "width": WIDTH, "height": HEIGHT}, "objects": objects}


def write_dataset(folder: pathlib.Path, count: int, seed: int = 0) -> None:
  """`count` textured 600x800 JPEGs (quality 90) with labels in `folder`."""
  rng = np.random.default_rng(seed)
  base = cv2.resize(rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8), (WIDTH, HEIGHT))
  for i in range(count):
    image = np.roll(base, 7 * i, axis=1)
    cv2.imwrite(str(folder / f"{i:05d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (folder / f"{i:05d}.json").write_text(json.dumps(_label(rng)))


def measure_encode(source, dataset_config, count: int):
  """(wall-clock, CPU-time) samples per second of decode + training augmentation + targets in this process.

  Samples are encoded and collated in batches of `dataset.batch_size`, as one loader worker does. The CPU-time
  rate counts every thread of the process (OpenCV may use more than one), so it is the rate per core-second;
  the wall-clock rate also depends on what else the machine runs.
  """
  settings = loader.SampleSettings.from_config(dataset_config)
  batch_size = int(dataset_config.batch_size)
  loader.encode_sample(source[0], settings, rng=np.random.default_rng(0))  # warm caches
  start, start_cpu = time.perf_counter(), time.process_time()
  for first in range(0, count, batch_size):
    loader.collate([loader.encode_sample(source[i % len(source)], settings, rng=np.random.default_rng([0, 0, i]))[0]
                    for i in range(first, first + batch_size)])
  done = -(-count // batch_size) * batch_size
  return done / (time.perf_counter() - start), done / (time.process_time() - start_cpu)


def measure_loader(source, dataset_config, workers: int) -> float:
  """Batches per second of `TrainLoader` over one epoch, after the first batch."""
  train_loader = loader.TrainLoader(source, dataset_config, seed=0, num_local_devices=1, shard_index=0,
                                    shard_count=1, workers=workers)
  iterator = train_loader.epoch(0)
  next(iterator)
  start = time.perf_counter()
  batches = sum(1 for _ in iterator)
  elapsed = time.perf_counter() - start
  iterator.close()
  return batches / elapsed


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--samples", type=int, default=200)
  parser.add_argument("--input-res", type=int, default=512)
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--category", default="cereal_box", help="chair / bottle give 4 / 12 symmetry copies")
  args = parser.parse_args()
  dataset_config = default.get_config().dataset
  dataset_config.input_res, dataset_config.output_res = args.input_res, args.input_res // 4
  dataset_config.category = args.category
  dataset_config.batch_size = 4
  with tempfile.TemporaryDirectory() as folder:
    write_dataset(pathlib.Path(folder), args.samples)
    source = discovery.FolderSamples(folder)
    encode_rate, encode_cpu_rate = measure_encode(source, dataset_config, args.samples)
    batch_rate = measure_loader(source, dataset_config, args.workers)
  print(json.dumps({"image": f"{WIDTH}x{HEIGHT} JPEG", "input_res": args.input_res, "category": args.category,
                    "encode_samples_per_s_one_process": round(encode_rate, 1),
                    "encode_samples_per_cpu_s": round(encode_cpu_rate, 1),
                    f"loader_batches_per_s_{args.workers}_workers_batch4": round(batch_rate, 2),
                    "loader_samples_per_s": round(4 * batch_rate, 1)}, indent=2))


if __name__ == "__main__":
  main()
