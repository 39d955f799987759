"""Runs train.py's task (`tasks.train.run`) on the test network, as the training tests' subprocess command.

  python loop_run.py DATA_DIR RESULTS_DIR [TRAIN_OVERRIDES_JSON [DATASET_OVERRIDES_JSON [CONFIG_OVERRIDES_JSON]]]

CONFIG_OVERRIDES_JSON maps dotted config paths to values ({"inference.visualization_threshold": 0.0}).

The config selects the test network (`models.registry.TINY`: `models.tiny.TinyCenterPose`, compiles in seconds);
everything else (loader, loss, optimizer, checkpoints, validation) is the real code, wired by
`training.setup.setup`, whose step this script wraps. With the environment variable
KILL_AT_STEP=N the process sends itself SIGKILL right after dispatching its N-th training step, once the
checkpoints started so far are on disk (an abrupt stop: no cleanup, no final checkpoint; a kill during a
save is tests/training/test_checkpoint.py's case); in a multi-process job only the process
KILL_PROCESS_ID (default: every one) does. With NAN_AT_STEP=N the N-th batch's input is NaN (a
non-finite loss); with GROW_FROM_STEP=N the loss that steps N on report is scaled by 1e3 (a loss that grows
far above its minimum and stays finite; BatchNorm keeps the tiny model from diverging for real). Prints the run's summary as the last line (JSON; process 0 only).
"""

import json
import os
import signal
import sys
import time

import jax
import jax.numpy as jnp

from centerpose_jax import checkpoint
from centerpose_jax import distributed
from centerpose_jax.models import registry
from centerpose_jax.tasks import train as train_task
from centerpose_jax.training import setup
from standin import tiny_config


def _wait_for_saves(train_dir, timeout_s=120.0):
  """Until no unfinished Orbax save (`*.orbax-checkpoint-tmp*` folder) is left in `train_dir`."""
  deadline = time.time() + timeout_s
  while time.time() < deadline and any(".orbax-checkpoint-tmp" in p.name for p in train_dir.iterdir()):
    time.sleep(0.05)


def _instrumented(train_step, kill_at: int, nan_at: int, grow_from: int, train_dir):
  """`train_step` that kills the process after step `kill_at` / gets a NaN input at `nan_at` / reports a loss
  1e3 times larger from `grow_from` on."""
  calls = []

  def instrumented(state, batch):
    calls.append(1)
    if len(calls) == nan_at:
      batch = dict(batch, input=jnp.full_like(batch["input"], jnp.nan))
    result = train_step(state, batch)
    if grow_from and len(calls) >= grow_from:
      result = (result[0], dict(result[1], loss=result[1]["loss"] * 1e3))
    if len(calls) == kill_at:
      _wait_for_saves(train_dir)
      os.kill(os.getpid(), signal.SIGKILL)
    return result
  return instrumented


def main():
  data_dir, results_dir = sys.argv[1], sys.argv[2]
  overrides = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
  config = tiny_config(data_dir, results_dir, **overrides)
  for name, value in (json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}).items():
    config.dataset[name] = value
  for path, value in (json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}).items():
    *sections, name = path.split(".")
    node = config
    for section in sections:
      node = node[section]
    node[name] = value
  kill_at = int(os.environ.get("KILL_AT_STEP", 0))
  if os.environ.get("KILL_PROCESS_ID", os.environ.get(distributed.PROCESS_ID_ENV)) != os.environ.get(
      distributed.PROCESS_ID_ENV):
    kill_at = 0
  config.model.backbone.model_type = registry.TINY
  with distributed.peer_failure_exits("loop_run.py"):
    distributed.join_job(config)  # before `setup` reads data or touches the devices
    parts = setup.setup(config, seed=int(config.train.seed))
    parts.train_step = _instrumented(parts.train_step, kill_at, int(os.environ.get("NAN_AT_STEP", 0)),
                                     int(os.environ.get("GROW_FROM_STEP", 0)), checkpoint.train_dir(config))
    summary = train_task.run(config, parts=parts)
  if jax.process_index() == 0:  # one summary per job: two processes' long lines could interleave in a pipe
    print(json.dumps(summary, default=str), flush=True)


if __name__ == "__main__":
  main()
