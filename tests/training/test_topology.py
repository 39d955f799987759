"""Issue 15, item 3: a checkpoint written on 8 (fake CPU) devices loads on 1 and on 2, and a run resumed on 2
devices with the same global batch continues exactly as it would have on 8."""

import json
import os
import pathlib
import subprocess
import sys

from centerpose_jax import checkpoint
from tools import checkpoint_info

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _run(mode, directory, devices):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]))
  result = subprocess.run([sys.executable, str(HERE / "topology_run.py"), mode, str(directory)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_checkpoint_from_eight_devices_loads_on_one_and_resumes_on_two(tmp_path):
  saved = _run("save", tmp_path, 8)
  assert saved["devices"] == 8 and saved["change"] > 1e-4  # the steps after the checkpoint move the weights
  resumed = _run("resume", tmp_path, 2)
  assert (resumed["devices"], resumed["restored_on"], resumed["step"]) == (2, 2, 2)
  assert resumed["difference"] < 1e-6, resumed
  # This process has one device: the weights, the tool and the fingerprint agree with the 2-device reader.
  variables = checkpoint.load_variables(tmp_path)
  assert checkpoint.fingerprint(variables) == resumed["loaded"] == resumed["fingerprint"]
  info = checkpoint_info.describe(tmp_path)
  assert (info["step"], info["epoch"], info["fingerprint"]) == (2, 1, resumed["fingerprint"])
  assert [entry["state"] for entry in info["checkpoints"]] == ["ok"]
