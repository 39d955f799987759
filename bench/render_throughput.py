"""Rendering speed of tools/render_object_dataset.py: frames per second of the demo object, per Mitsuba variant.

  python bench/render_throughput.py [--sizes 512x512,128x128] [--frames 8] [--variants scalar_rgb,llvm_ad_rgb]

For each variant (each in its own process: Dr.Jit binds one LLVM per process) and image size, prints
1. in one process with every CPU core's thread: seconds per frame after two warm-up frames (which compile the
   llvm kernels), split into sampling the scene, rendering (path tracing and the mask passes) and developing;
2. `object_dataset.generate_dataset` with --workers 1 and 2 processes (one thread per core each), end to end:
   worker start-up, kernel compilation (cached on disk after the first run) and PNG writing included.
Uses the project's demo object (tools/make_demo_object.py) and the default randomisation.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

_REPO = pathlib.Path(__file__).resolve().parents[1]


def _measure(variant, sizes, frames) -> dict:
  from centerpose_jax.data import mitsuba_render  # pylint: disable=import-outside-toplevel
  from centerpose_jax.data import object_dataset  # pylint: disable=import-outside-toplevel
  from centerpose_jax.data import object_mesh  # pylint: disable=import-outside-toplevel
  from centerpose_jax import geometry  # pylint: disable=import-outside-toplevel
  from tools import make_demo_object  # pylint: disable=import-outside-toplevel

  results = {"variant": variant, "cpus": os.cpu_count()}
  with tempfile.TemporaryDirectory() as folder:
    mesh = pathlib.Path(folder) / "radio.glb"
    make_demo_object.build_mesh().export(str(mesh))
    mitsuba_render.select_variant(variant)
    model = object_mesh.load_object(mesh)
    corners = geometry.cuboid_vertices(model.size)[1:]
    for width, height in sizes:
      options = object_dataset.RenderOptions(width=width, height=height)
      times = []
      for index in range(frames + 2):
        rng = np.random.default_rng(index)
        start = time.perf_counter()
        frame = object_dataset.sample_frame(rng, model, options)
        sampled = time.perf_counter()
        rendering = mitsuba_render.render(frame.scene, corners)
        rendered = time.perf_counter()
        object_dataset.develop(frame, rendering.rgba, rng)
        times.append((sampled - start, rendered - sampled, time.perf_counter() - rendered))
      sample, render, develop = np.mean(times[2:], axis=0)
      entry = {"in_process_seconds_per_frame": round(sample + render + develop, 3),
               "sample_s": round(sample, 4), "render_s": round(render, 3), "develop_s": round(develop, 4)}
      for workers in (1, 2):
        summary = object_dataset.generate_dataset(pathlib.Path(folder) / f"{width}_{workers}", mesh, frames, 0,
                                                  seed=1, options=options, variant=variant, workers=workers,
                                                  progress=False)
        entry[f"dataset_frames_per_second_workers_{workers}"] = summary["frames_per_second"]
      results[f"{width}x{height}"] = entry
  return results


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default="512x512,128x128")
  parser.add_argument("--frames", type=int, default=8, help="frames timed per size (after 2 warm-up frames)")
  parser.add_argument("--variants", default="scalar_rgb,llvm_ad_rgb")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure this variant in this process
  args = parser.parse_args()
  sizes = [tuple(int(value) for value in size.split("x")) for size in args.sizes.split(",")]
  if args.one:
    print(json.dumps(_measure(args.one, sizes, args.frames)))
    return
  for variant in args.variants.split(","):
    from centerpose_jax.data import mitsuba_render  # pylint: disable=import-outside-toplevel
    if variant.startswith("llvm") and mitsuba_render.resolve_variant("auto") != "llvm_ad_rgb":
      print(json.dumps({"variant": variant, "skipped": "no LLVM library (pip install karellen-llvm-core)"}))
      continue
    output = subprocess.run([sys.executable, __file__, "--one", variant, "--sizes", args.sizes, "--frames",
                             str(args.frames)], cwd=_REPO, check=True, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(_REPO)}).stdout
    print(json.dumps(json.loads(output.strip().splitlines()[-1]), indent=1))


if __name__ == "__main__":
  main()
