"""The cost of the process boundary: training steps/s of 1 process x 2 devices against 2 processes x 1 device
(jax.distributed, gloo collectives over 127.0.0.1) on this machine's CPU, with the same global batch.

  .venv/bin/python bench/multi_process.py                  # 2 rounds of both set-ups
  .venv/bin/python bench/multi_process.py --rounds 1 --epochs 2

Each run is the real training task (tasks/train.py: grain loader, jitted data-parallel step, Orbax
checkpoint at the end) on a synthetic dataset, with a slim DLA34 (width 0.125, head_conv 32) at input 64 and
batch 2 per device, started by `python -m centerpose_jax.launch`. The set-ups alternate, so both see the same
machine load; steps/s is the loop's steady-state samples/s (after the first, compiling step) / global batch.
It also prints whether the two set-ups ended with bit-identical weights (the checkpoint fingerprint).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
BATCH_PER_DEVICE = 2
SETUPS = (("1 process x 2 devices", 1, 2), ("2 processes x 1 device", 2, 1))


def worker(data: str, results: str, epochs: int) -> None:
  """One process of a run: train, then print the summary (JSON) as the last line."""
  sys.path.insert(0, str(REPO))
  from configs import default  # pylint: disable=g-import-not-at-top
  from centerpose_jax.tasks import train  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.results_dir = results
  config.dataset.train_data = str(pathlib.Path(data) / "train")
  config.dataset.val_data = ""
  config.dataset.input_res, config.dataset.output_res = 64, 16
  config.dataset.batch_size = BATCH_PER_DEVICE
  config.dataset.workers = 0
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.125
  config.model.head_conv = 32
  config.model.use_pretrained = False
  config.train.num_epochs = epochs
  config.train.num_gpus = -1
  config.train.seed = 0
  config.train.checkpoint_interval = epochs
  print(json.dumps(train.run(config), default=str))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rounds", type=int, default=2, help="runs of each set-up, alternating")
  parser.add_argument("--epochs", type=int, default=3)
  parser.add_argument("--frames", type=int, default=64, help="training frames (global batch 4)")
  parser.add_argument("--worker", nargs=2, metavar=("DATA", "RESULTS"), help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    worker(*args.worker, args.epochs)
    return
  sys.path.insert(0, str(REPO))
  from centerpose_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  with tempfile.TemporaryDirectory(prefix="bench_multi_process_") as root:
    root = pathlib.Path(root)
    synthetic.generate_dataset(root / "data", "cereal_box", num_train=args.frames, num_val=0, seed=0, width=96,
                               height=128)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("XLA_FLAGS", None)
    results = {name: [] for name, _, _ in SETUPS}
    fingerprints = {}
    for round_index in range(args.rounds):
      for name, nproc, devices in SETUPS:
        out = root / f"run{round_index}_{nproc}"
        command = [sys.executable, "-m", "centerpose_jax.launch", "--nproc", str(nproc), "--cpu_devices",
                   str(devices), str(pathlib.Path(__file__).resolve()), "--epochs", str(args.epochs), "--worker",
                   str(root / "data"), str(out)]
        run = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if run.returncode != 0:
          sys.exit(f"{name} failed:\n{run.stderr[-3000:]}")
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        steps_per_second = summary["samples_per_second"] / (BATCH_PER_DEVICE * 2)
        results[name].append(steps_per_second)
        fingerprints[name] = summary["fingerprint"]
        print(f"round {round_index + 1}, {name}: {summary['steps']} steps, {steps_per_second:.2f} steps/s "
              f"(steady state), {summary['seconds']:.1f} s in the loop", flush=True)
    for name, values in results.items():
      print(f"{name}: {max(values):.2f} steps/s (best of {len(values)})")
    single, multi = (max(results[name]) for name, _, _ in SETUPS)
    print(f"2 processes / 1 process: {multi / single:.2f}x the steps/s")
    print(f"same final weights: {len(set(fingerprints.values())) == 1}")


if __name__ == "__main__":
  main()
