"""Whole training runs (subprocesses running tests/training/loop_run.py): exact resume after SIGKILL,
determinism by seed, and a diverging run stopping with its last good checkpoint kept.

Each run is a fresh process with the stand-in model on a tiny synthetic dataset; the processes share a JAX
compilation cache so that only the first one compiles.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from centerpose_jax.data import synthetic
from centerpose_jax.training import logging as log_lib

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]
# 8 training frames / batch 2 = 4 steps per epoch; 3 epochs, a checkpoint after each.
TRAIN = {"num_epochs": 3, "checkpoint_interval": 1, "validation_interval": 3}
KILL_AT_STEP = 7  # in epoch 2, after epoch 1's checkpoint (step 4)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
  root = tmp_path_factory.mktemp("resume")
  synthetic.generate_dataset(root / "data", "cereal_box", num_train=8, num_val=2, seed=0, width=96, height=128)
  return root


def _run(workspace, results, overrides=None, **instrument):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]),
             JAX_COMPILATION_CACHE_DIR=str(workspace / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  for name in ("kill_at", "nan_at"):  # loop_run.py's KILL_AT_STEP / NAN_AT_STEP
    variable = f"{name.upper()}_STEP"
    env.pop(variable, None)
    if name in instrument:
      env[variable] = str(instrument[name])
  command = [sys.executable, str(HERE / "loop_run.py"), str(workspace / "data"), str(workspace / results),
             json.dumps(dict(TRAIN, **(overrides or {})))]
  return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)


def _summary(result):
  assert result.returncode == 0, result.stderr[-4000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def uninterrupted(workspace):
  return _summary(_run(workspace, "uninterrupted"))


def test_sigkill_in_the_middle_then_same_command_gives_identical_weights(workspace, uninterrupted):
  killed = _run(workspace, "killed", kill_at=KILL_AT_STEP)
  assert killed.returncode == -9, (killed.returncode, killed.stderr[-2000:])
  train_dir = workspace / "killed" / "train"
  assert sorted(p.name for p in train_dir.iterdir() if p.name.isdigit()) == ["4"]  # epoch 1 only

  resumed = _summary(_run(workspace, "killed"))
  assert resumed["start"].startswith("resumed from") and resumed["start"].endswith(os.path.join("train", "4"))
  assert resumed["steps"] == uninterrupted["steps"] == 12
  assert resumed["fingerprint"] == uninterrupted["fingerprint"]
  assert resumed["train_loss"] == uninterrupted["train_loss"]

  # The tool reports the same fingerprint for the final checkpoint on disk.
  tool = subprocess.run([sys.executable, str(REPO / "tools" / "checkpoint_info.py"), str(workspace / "killed")],
                        capture_output=True, text=True, timeout=300, check=True,
                        env=dict(os.environ, JAX_PLATFORMS="cpu"))
  lines = dict(line.split(": ", 1) for line in tool.stdout.strip().splitlines())
  assert lines["step"] == "12" and lines["epoch"] == "3"
  assert re.fullmatch(r"[0-9a-f]{64}", lines["fingerprint"])
  assert lines["fingerprint"] == uninterrupted["fingerprint"]
  assert int(lines["parameters"]) > 0

  # status.json of the resumed run: started, interrupted (no SUCCESS), restarted, finished with KPIs.
  statuses = [record["status"] for record in log_lib.read_status(train_dir)]
  assert statuses[0] == "STARTED" and statuses[-1] == "SUCCESS" and statuses.count("SUCCESS") == 1
  final = log_lib.read_status(train_dir)[-1]
  assert set(final["kpi"]) == {"train_loss", "val_3DIoU", "val_2DMPE"}


def test_same_seed_same_result_and_another_seed_differs(workspace, uninterrupted):
  again = _summary(_run(workspace, "same_seed"))
  assert again["fingerprint"] == uninterrupted["fingerprint"]
  other = _summary(_run(workspace, "other_seed", {"seed": 1}))
  assert other["fingerprint"] != uninterrupted["fingerprint"]


def test_non_finite_fp32_loss_stops_the_run_keeping_the_last_good_checkpoint(workspace):
  result = _run(workspace, "diverged", nan_at=6)  # in epoch 2
  assert result.returncode != 0
  assert "TrainingDivergedError" in result.stderr and "the training loss is nan at step 6" in result.stderr
  train_dir = workspace / "diverged" / "train"
  assert sorted(p.name for p in train_dir.iterdir() if p.name.isdigit()) == ["4"]
  final = log_lib.read_status(train_dir)[-1]
  assert final["status"] == "FAILURE" and "loss is nan" in final["message"]



@pytest.mark.parametrize("source", ["pretrained_model_path", "resume_training_checkpoint_path"])
def test_dry_run_from_another_runs_checkpoint_saves_nothing(workspace, uninterrupted, source):
  """A dry run (one step, one validation batch) starting from the uninterrupted run's epoch-1 checkpoint: as
  pretrained weights (fresh optimizer, step 0) or as an explicit resume (step 4 -> 5)."""
  checkpoint_4 = str(pathlib.Path(uninterrupted["workdir"]) / "4")
  summary = _summary(_run(workspace, f"dry_{source}", {"is_dry_run": True, source: checkpoint_4}))
  expected_start = "weights from" if source == "pretrained_model_path" else "resumed from"
  assert summary["start"] == f"{expected_start} {checkpoint_4}"
  assert summary["steps"] == (1 if source == "pretrained_model_path" else 5)
  assert "checkpoint" not in summary and "val_3DIoU" in summary
  train_dir = workspace / f"dry_{source}" / "train"
  assert not train_dir.exists() or not any(p.name.isdigit() for p in train_dir.iterdir())
  assert log_lib.read_status(train_dir) == []
