"""Data parallelism: 8 (fake CPU) devices with per-device batch b train exactly like 1 device with batch 8b."""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_eight_devices_match_one_device_with_the_global_batch():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]))
  result = subprocess.run([sys.executable, str(HERE / "data_parallel_run.py")], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  # Training moved the weights and the BatchNorm statistics (with dropout and BatchNorm active)...
  assert report["params_change"] > 1e-3 and report["batch_stats_change"] > 1e-3
  # ...identically on 8 devices (one sample each) and on 1 device: BatchNorm sees the global batch.
  assert report["params"] < 1e-5, report
  assert report["batch_stats"] < 1e-5, report
