"""Whole training runs (subprocesses running tests/training/loop_run.py): exact resume after SIGKILL,
determinism by seed, and a diverging run stopping with its last good checkpoint kept.

Each run is a fresh process with the stand-in model on a tiny synthetic dataset; the processes share a JAX
compilation cache so that only the first one compiles.
"""

import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from helpers import tensorboard_scalars
from centerpose_jax.data import synthetic
from centerpose_jax.models import registry
from centerpose_jax.training import reporting
from tools import checkpoint_info

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


def _run(workspace, results, overrides=None, data="data", dataset=None, **instrument):
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([str(HERE), str(REPO)]),
             JAX_COMPILATION_CACHE_DIR=str(workspace / "jax_cache"),
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
  for name in ("kill_at", "nan_at", "grow_from"):  # loop_run.py's KILL_AT_STEP / NAN_AT_STEP / GROW_FROM_STEP
    variable = f"{name.upper()}_STEP"
    env.pop(variable, None)
    if name in instrument:
      env[variable] = str(instrument[name])
  command = [sys.executable, str(HERE / "loop_run.py"), str(workspace / data), str(workspace / results),
             json.dumps(dict(TRAIN, **(overrides or {}))), json.dumps(dataset or {})]
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
  # recorded in the meta: the configured network (loop_run.py selects the test network by config)
  assert lines["model"].startswith(f"{registry.TINY} (width_multiplier 0.125, head_conv 32, ")
  assert re.fullmatch(r"[0-9a-f]{64}", lines["fingerprint"])
  assert lines["fingerprint"] == uninterrupted["fingerprint"]
  assert int(lines["parameters"]) > 0

  # status.json of the resumed run: started, interrupted (no SUCCESS), restarted, finished with KPIs.
  statuses = [record["status"] for record in reporting.read_status(train_dir)]
  assert statuses[0] == "STARTED" and statuses[-1] == "SUCCESS" and statuses.count("SUCCESS") == 1
  final = reporting.read_status(train_dir)[-1]
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
  final = reporting.read_status(train_dir)[-1]
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
  assert reporting.read_status(train_dir) == []


def _largest_file(folder):
  return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_damaged_newest_checkpoint_resumes_from_the_newest_readable_one(workspace, uninterrupted):
  """Issue 15, item 4: checkpoint 8 of 4, 8 is truncated: the tool reports it, the run says which step and why,
  resumes from 4 (same final weights as the uninterrupted run) and keeps the damaged one as 8.damaged."""
  train_dir = workspace / "damaged" / "train"
  train_dir.mkdir(parents=True)
  for step in ("4", "8"):
    shutil.copytree(pathlib.Path(uninterrupted["workdir"]) / step, train_dir / step)
  data_file = _largest_file(train_dir / "8" / "state")
  data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])
  assert checkpoint_info.main([str(train_dir)]) == 1
  lines = [line for line in capsys_lines(checkpoint_info, train_dir) if line.startswith("checkpoint ")]
  assert lines[0].startswith("checkpoint 4: ok, epoch 1, fingerprint ")
  assert lines[1].startswith("checkpoint 8: damaged (")

  result = _run(workspace, "damaged")
  summary = _summary(result)
  assert summary["start"] == f"resumed from {train_dir / '4'}"
  assert f"{train_dir / '8'}: the checkpoint of step 8 cannot be read (" in result.stderr
  assert "checkpoint 8 is damaged: resuming from step 4 instead; the damaged one is kept as" in result.stderr
  assert summary["fingerprint"] == uninterrupted["fingerprint"] and summary["steps"] == 12
  assert (train_dir / "8.damaged" / "state" / data_file.relative_to(train_dir / "8" / "state")).is_file()
  states = {entry["step"]: entry["state"] for entry in checkpoint_info.checkpoint_states(train_dir)
            if entry["state"] != "ok" or entry["step"] != 8}
  assert states == {4: "ok", 8: "set aside", 12: "ok"}


def capsys_lines(tool, path):
  """The lines `tools/checkpoint_info.py PATH` prints."""
  buffer = io.StringIO()
  with contextlib.redirect_stdout(buffer):
    tool.main([str(path)])
  return buffer.getvalue().splitlines()


@pytest.mark.parametrize("stop", [False, True])
def test_diverging_loss_warns_or_stops_keeping_the_last_good_checkpoint(workspace, stop):
  """Issue 15, item 7: from step 6 on the loss is 1000x its minimum; with divergence_steps 2 that is caught at
  step 7 (epoch 2): a warning (status.json, summary) and training goes on, or a stop without saving."""
  results = f"growing_{stop}"
  result = _run(workspace, results, {"num_epochs": 2, "divergence_steps": 2, "stop_on_divergence": stop},
                grow_from=6)
  expected = "the training loss is diverging: "
  train_dir = workspace / results / "train"
  if stop:
    assert result.returncode == 1 and "TrainingDivergedError" in result.stderr
    assert f"since step 6 (train.divergence_factor, train.divergence_steps): stopped without saving (the last " \
           f"checkpoint written before the loss began to grow is {train_dir}/4)" in result.stderr
    assert sorted(p.name for p in train_dir.iterdir() if p.name.isdigit()) == ["4"]
    final = reporting.read_status(train_dir)[-1]
    assert final["status"] == "FAILURE" and final["message"].startswith(expected)
  else:
    summary = _summary(result)
    assert summary["diverged_at"] == [7] and summary["steps"] == 8
    warnings = [r for r in reporting.read_status(train_dir) if r["verbosity"] == "WARNING"]
    assert len(warnings) == 1 and warnings[0]["message"].startswith(expected + "")
    assert "at step 7" in warnings[0]["message"] and "training goes on" in warnings[0]["message"]


def test_skipped_and_unreadable_counts_reach_summary_status_and_tensorboard(workspace):
  """Issue 15, item 1: a truncated training image stops the run before step 0; with dataset.skip_invalid it is
  skipped, and the count is in the run's summary, every status.json line and TensorBoard."""
  data = workspace / "data_one_broken"
  shutil.copytree(workspace / "data", data)
  first = sorted((data / "train").glob("*.png"))[0]
  broken = first.with_name("zz_broken.png")  # a 9th frame: the 8 others keep the steps per epoch (and the compile)
  broken.write_bytes(first.read_bytes()[:100])
  shutil.copy(first.with_suffix(".json"), broken.with_suffix(".json"))
  stopped = _run(workspace, "skipping", {"num_epochs": 1}, data=data.name)
  assert stopped.returncode == 1 and f"{broken}: image: cannot be decoded" in stopped.stderr
  skipping = _run(workspace, "skipping", {"num_epochs": 1}, data=data.name, dataset={"skip_invalid": True})
  summary = _summary(skipping)
  assert (summary["skipped_samples"], summary["unreadable_samples"]) == (1, 0)
  train_dir = workspace / "skipping" / "train"
  assert all(record["data"] == {"skipped_samples": 1, "unreadable_samples": 0}
             for record in reporting.read_status(train_dir))
  assert tensorboard_scalars(train_dir)["data/skipped_samples"] == [(4, 1.0)]
