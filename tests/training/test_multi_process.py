"""Issue 21: a job of 2 processes x 1 CPU device (jax.distributed, gloo collectives, 127.0.0.1) trains,
validates, checkpoints and resumes exactly like 1 process x 2 devices with the same global batch and seed.

Each run is tests/training/loop_run.py (the stand-in model; the real loader, loop, validation and Orbax
checkpoints) started by `python -m centerpose_jax.launch`. The dataset does not divide evenly: 9 training frames
make 2 global batches of 4 (one frame left out by every process alike) and 3 validation frames split 2 + 1.
The runs share a JAX compilation cache.
"""

import contextlib
import io
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from centerpose_jax import launch
from centerpose_jax.data import synthetic
from centerpose_jax import checkpoint
from helpers import tensorboard_scalars
from tools import checkpoint_info

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRAIN = {"num_epochs": 2, "checkpoint_interval": 1, "validation_interval": 2, "num_gpus": -1}
# Every decoded object is scored, so validation has predictions to match (val_2DMPE is a number).
CONFIG = {"inference.visualization_threshold": 0.0}
STEPS = 4  # 2 epochs x 2 global batches
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp("multi_process")
  synthetic.generate_dataset(root / "data", "cereal_box", num_train=9, num_val=3, seed=0, width=96, height=128)
  return root


def _env(workspace, **extra):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]),
             JAX_COMPILATION_CACHE_DIR=str(workspace / "jax_cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", CENTERPOSE_HEARTBEAT_TIMEOUT_S="30",
             CENTERPOSE_INIT_TIMEOUT_S="60")
  for name in ("KILL_AT_STEP", "KILL_PROCESS_ID", "XLA_FLAGS"):
    env.pop(name, None)
  env.update(extra)
  return env


def _loop_run(workspace, results, train=None):
  return [str(HERE / "loop_run.py"), str(workspace / "data"), str(workspace / results),
          json.dumps(dict(TRAIN, **(train or {}))), "{}", json.dumps(CONFIG)]


def _launch(workspace, results, nproc, cpu_devices):
  command = [sys.executable, "-m", "centerpose_jax.launch", "--nproc", str(nproc), "--cpu_devices", str(cpu_devices)]
  return subprocess.Popen(command + _loop_run(workspace, results), env=_env(workspace), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def _summary(job):
  out, err = job.communicate(timeout=TIMEOUT_S)
  assert job.returncode == 0, err[-4000:]
  return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def runs(workspace):
  """Side by side: "one", 1 process x 2 devices, and "killed", 2 processes x 1 device started by hand (no
  launcher to stop the survivor) whose process 1 is killed (SIGKILL) during step 3, after epoch 1's
  checkpoint; then "resumed", the same 2-process job started again by the launcher.

  Returns {"one": summary, "resumed": summary, "killed": [(status, stderr) of process 0, of process 1],
  "stop_s": seconds from process 1's death to process 0's exit}.
  """
  one = _launch(workspace, "one", nproc=1, cpu_devices=2)
  env = _env(workspace, KILL_AT_STEP="3", KILL_PROCESS_ID="1")
  environments = launch.process_environments(2, f"127.0.0.1:{launch.free_port()}", cpu_devices=1, base=env)
  processes = [subprocess.Popen([sys.executable] + _loop_run(workspace, "killed"), env=process_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for process_env in environments]
  _, err1 = processes[1].communicate(timeout=TIMEOUT_S)
  killed_at = time.monotonic()
  _, err0 = processes[0].communicate(timeout=TIMEOUT_S)
  stop_s = time.monotonic() - killed_at
  return {"one": _summary(one), "killed": [(processes[0].returncode, err0), (processes[1].returncode, err1)],
          "stop_s": stop_s, "resumed": _summary(_launch(workspace, "killed", nproc=2, cpu_devices=1))}


def _max_difference(a, b):
  return max(float(np.abs(np.asarray(x) - np.asarray(y)).max())
             for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_two_processes_train_and_validate_like_one_process_with_two_devices(workspace, runs):
  two, one = runs["resumed"], runs["one"]
  assert two["steps"] == one["steps"] == STEPS
  # The same loss at every step (process 0's TensorBoard; the resumed run rewrites the steps after 2)...
  losses = {name: dict(tensorboard_scalars(workspace / name / "train")["train/loss"]) for name in ("killed", "one")}
  assert sorted(losses["killed"]) == sorted(losses["one"]) == list(range(1, STEPS + 1))
  assert max(abs(losses["killed"][step] - losses["one"][step]) for step in losses["one"]) <= 1e-6, losses
  # ...and the same final weights, read back on this process's one device from both checkpoints.
  variables = {name: checkpoint.load_variables(workspace / name) for name in ("killed", "one")}
  assert _max_difference(variables["killed"], variables["one"]) <= 1e-6
  assert _max_difference(variables["one"], checkpoint.load_variables(workspace / "one" / "train" / "2")) > 1e-4
  # Validation: each process scored its share (2 + 1 frames); the gathered metrics are one process's.
  assert math.isfinite(one["val_2DMPE"])
  for name in ("val_3DIoU", "val_2DMPE"):
    assert abs(two[name] - one[name]) <= 1e-6, (name, two[name], one[name])
  # Only process 0 writes TensorBoard: one event file per run (the killed one and the resumed one).
  assert len(list((workspace / "killed" / "train").rglob("events.*"))) == 2


def test_kill_9_of_one_process_stops_the_job_and_the_same_command_resumes_exactly(workspace, runs):
  (status0, err0), (status1, err1) = runs["killed"]
  assert status1 == -9, err1[-3000:]
  # Process 0 stops by itself, at once (its next collective fails; the heartbeat timeout, 30 s, bounds it).
  assert status0 == 1, err0[-3000:]
  assert runs["stop_s"] < 30
  assert "loop_run.py: process 0: another process of the job stopped" in err0
  assert "Start the same commands again to resume" in err0
  train_dir = workspace / "killed" / "train"
  resumed = runs["resumed"]
  assert resumed["start"] == f"resumed from {train_dir / '2'}"
  assert resumed["steps"] == STEPS
  # Bit-identical to the uninterrupted run (1 process x 2 devices = 2 processes x 1 device, bench/
  # multi_process.py); tools/checkpoint_info.py, on this process's one device, reports that fingerprint.
  assert resumed["fingerprint"] == runs["one"]["fingerprint"]
  lines = dict(line.split(": ", 1) for line in _tool_output(train_dir) if ": " in line)
  assert lines["fingerprint"] == resumed["fingerprint"] and lines["step"] == str(STEPS)
  assert "checkpoint 2: ok, epoch 1" in "\n".join(_tool_output(train_dir))


def _tool_output(path):
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    checkpoint_info.main([str(path)])
  return buffer.getvalue().splitlines()


def test_processes_with_other_configs_or_device_counts_stop_at_start_up(workspace):
  """The config digest and the device counts are exchanged at start-up: every process stops at once naming
  both differences (no hang in a later collective)."""
  coordinator = f"127.0.0.1:{launch.free_port()}"
  processes = []
  for rank, (devices, epochs) in enumerate(((2, 2), (1, 3))):
    env = launch.process_environments(2, coordinator, cpu_devices=devices, base=_env(workspace))[rank]
    processes.append(subprocess.Popen([sys.executable] + _loop_run(workspace, "mismatch", {"num_epochs": epochs}),
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  for process in processes:
    _, err = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode != 0
    assert "DistributedSetupError: the 2 processes of the job disagree: the config of process(es) 1 differs" in err
    assert "local_devices differs (process 0: 2, process 1: 1): the global batch" in err
  assert not (workspace / "mismatch" / "train").exists() or not any(
      p.name.isdigit() for p in (workspace / "mismatch" / "train").iterdir())
