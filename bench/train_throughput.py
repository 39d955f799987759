"""Training throughput: compile time, samples/s of the full train step (forward + backward + Adam) and peak
memory, for DLA34 and fan_small at 512x512 batch 2 and 256x256 batch 8, in fp32 and bf16.

  .venv/bin/python bench/train_throughput.py                      # all 8 configurations (slow on a CPU)
  .venv/bin/python bench/train_throughput.py --arch DLA34 --res 128 --batch 2 --precision fp32 --steps 2
  .venv/bin/python bench/train_throughput.py --arch DLA34 --res 128 --batch 8 --precision fp32 \
      --width-multiplier 0.25 --head-conv 64                      # the demo's model
  .venv/bin/python bench/train_throughput.py --arch fan_small --res 512 --batch 2 --precision fp32 \
      --activation-checkpointing                                 # train.activation_checkpointing on

Each configuration runs in its own process (so its peak memory is its own) on the default JAX backend, with
one device and random targets in the loader's layout (one object per sample). The step is the one training
runs, wired by `training.setup.setup`; the first call is timed as compile time (lowering +
XLA compile + one step), the next `--steps` calls as steady state. Peak memory: the accelerator's
`peak_bytes_in_use` when it reports one, else the process's peak resident set size (CPU). It runs with train.py's
host memory settings (malloc's huge pages, freed memory kept mapped, inline CPU dispatch:
`centerpose_jax.host_memory`), so a CPU step takes what it takes in train.py.
"""

import argparse
import itertools
import json
import resource
import subprocess
import sys
import time

from centerpose_jax import host_memory

host_memory.use_host_memory_settings(__name__, keep_freed_memory=True)  # as train.py; it may restart the program

ARCHS = ("DLA34", "fan_small")
SHAPES = ((512, 2), (256, 8))  # (input pixels, batch)
PRECISIONS = ("fp32", "bf16")


def _batch(res: int, batch: int, rng):
  """Random inputs and targets [batch, ...] with one object per sample at a random grid cell."""
  from centerpose_jax.data import targets  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  grid = res // 4
  samples = []
  for _ in range(batch):
    sample = targets.empty_targets(num_symmetry=1, max_objs=10, num_joints=8, output_size=(grid, grid))
    cell = int(rng.integers(0, grid * grid))
    sample["hm"][0].reshape(-1)[cell] = 1.0
    sample["ind"][0, 0], sample["reg_mask"][0, 0] = cell, 1.0
    sample["wh"][0, 0], sample["scale"][0, 0] = (10.0, 20.0), (0.5, 1.0, 0.7)
    sample["hps"][0, 0], sample["hps_mask"][0, 0] = rng.integers(-5, 5, 16), 1.0
    sample["input"] = rng.normal(size=(res, res, 3)).astype(np.float32)
    sample["sample_weight"] = np.float32(1.0)
    samples.append(sample)
  return {key: np.stack([s[key] for s in samples]) for key in samples[0]}


def build_step(arch: str, res: int, batch: int, precision: str, width_multiplier: float, head_conv: int = 0,
               activation_checkpointing: bool = False):
  """The jitted training step of one configuration, its initial state and a random batch (one device).

  Returns:
    (train_step, state, arrays, init_seconds): `training.setup.setup`'s step (the one training runs), the train state,
    the sharded batch and the seconds spent initialising the variables and the state.
  """
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from centerpose_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from centerpose_jax import mesh as mesh_lib  # pylint: disable=g-import-not-at-top
  from centerpose_jax.training import setup  # pylint: disable=g-import-not-at-top

  config = config_lib.get_config()
  config.model.backbone.model_type = arch
  config.model.backbone.width_multiplier = width_multiplier
  if head_conv:
    config.model.head_conv = head_conv
  config.train.precision = precision
  config.train.activation_checkpointing = activation_checkpointing
  config.dataset.input_res, config.dataset.output_res = res, res // 4
  config.dataset.batch_size = batch
  parts = setup.setup(config, devices=jax.devices()[:1], batches_per_epoch=1000)
  start = time.perf_counter()
  state = parts.new_state(parts.init_variables(jax.random.key(0, impl="rbg")), jax.random.PRNGKey(1))
  jax.block_until_ready(state)
  init_seconds = time.perf_counter() - start
  arrays = mesh_lib.shard_batch(_batch(res, batch, np.random.default_rng(0)), parts.mesh)
  return parts.train_step, state, arrays, init_seconds


def run_one(arch: str, res: int, batch: int, precision: str, steps: int, width_multiplier: float,
            head_conv: int = 0, activation_checkpointing: bool = False) -> dict:
  """Measures one configuration in this process."""
  import jax  # pylint: disable=g-import-not-at-top
  train_step, state, arrays, init_seconds = build_step(arch, res, batch, precision, width_multiplier, head_conv,
                                                       activation_checkpointing)
  start = time.perf_counter()
  state, metrics = train_step(state, arrays)
  jax.block_until_ready(metrics)
  compile_seconds = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = train_step(state, arrays)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / steps
  device = jax.devices()[0]
  stats = device.memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    peak, peak_kind = stats["peak_bytes_in_use"], "device"
  else:
    peak, peak_kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"
  return {"arch": arch, "width_multiplier": width_multiplier, "head_conv": head_conv or 256, "input": res,
          "batch": batch, "precision": precision, "activation_checkpointing": activation_checkpointing,
          "device": device.device_kind, "init_s": round(init_seconds, 2),
          "compile_plus_first_step_s": round(compile_seconds, 2), "step_s": round(seconds, 3),
          "samples_per_s": round(batch / seconds, 3), "peak_memory_gib": round(peak / 2**30, 3),
          "peak_memory_kind": peak_kind, "loss": float(metrics["loss"])}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--arch", choices=ARCHS, action="append", help="repeatable; default: both")
  parser.add_argument("--res", type=int, help="input pixels (with --batch); default: 512/2 and 256/8")
  parser.add_argument("--batch", type=int, help="batch size (with --res)")
  parser.add_argument("--precision", choices=PRECISIONS, action="append", help="repeatable; default: both")
  parser.add_argument("--steps", type=int, default=5, help="timed steps after the first")
  parser.add_argument("--width-multiplier", type=float, default=1.0, help="DLA34 width (1.0 = TAO)")
  parser.add_argument("--head-conv", type=int, default=0, help="head hidden channels (0: TAO's 256)")
  parser.add_argument("--activation-checkpointing", action="store_true",
                      help="train.activation_checkpointing: rematerialise the backbone blocks")
  parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: measure in-process
  args = parser.parse_args(argv)
  if (args.res is None) != (args.batch is None):
    parser.error("--res and --batch go together")
  if args.one:
    print(json.dumps(run_one(args.arch[0], args.res, args.batch, args.precision[0], args.steps,
                             args.width_multiplier, args.head_conv, args.activation_checkpointing)))
    return 0
  shapes = [(args.res, args.batch)] if args.res else list(SHAPES)
  for arch, (res, batch), precision in itertools.product(args.arch or ARCHS, shapes, args.precision or PRECISIONS):
    command = [sys.executable, __file__, "--one", "--arch", arch, "--res", str(res), "--batch", str(batch),
               "--precision", precision, "--steps", str(args.steps), "--width-multiplier",
               str(args.width_multiplier if arch == "DLA34" else 1.0), "--head-conv", str(args.head_conv)]
    command += ["--activation-checkpointing"] if args.activation_checkpointing else []
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
      print(f"{arch} {res}x{res} batch {batch} {precision}: failed\n{result.stderr[-2000:]}", file=sys.stderr)
      return 1
    row = json.loads(result.stdout.strip().splitlines()[-1])
    remat = ", activation checkpointing" if args.activation_checkpointing else ""
    print(f"{arch:9s} {res}x{res} batch {batch} {precision}{remat}: init {row['init_s']:.1f} s, compile+first step "
          f"{row['compile_plus_first_step_s']:.1f} s, {row['step_s']:.3f} s/step, {row['samples_per_s']:.2f} "
          f"samples/s, peak {row['peak_memory_gib']:.2f} GiB ({row['peak_memory_kind']}) on {row['device']}")
    print(json.dumps(row), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
