"""The whole loop for one step with the real (slim DLA34) network, as flax's examples/imagenet train_test.py."""

import json

import jax
import numpy as np

from centerpose_jax.data import synthetic
from centerpose_jax.training import checkpoint
from centerpose_jax.training import logging as log_lib
from centerpose_jax.training import loop
from standin import tiny_config


def test_train_and_evaluate_one_step(tmp_path):
  synthetic.generate_dataset(tmp_path / "data", "cereal_box", num_train=2, num_val=1, seed=0, width=96, height=128)
  config = tiny_config(tmp_path / "data", tmp_path / "results", num_epochs=1, checkpoint_interval=1,
                       validation_interval=1)
  summary = loop.train_and_evaluate(config)

  train_dir = tmp_path / "results" / "train"
  assert summary["steps"] == 1 and summary["epochs"] == 1
  assert np.isfinite(summary["train_loss"]) and summary["train_loss"] > 0
  assert 0.0 <= summary["val_3DIoU"] <= 1.0 and "val_2DMPE" in summary
  # The checkpoint holds the final weights, its epoch and the data iterator state.
  assert summary["checkpoint"] == str(train_dir / "1")
  meta = checkpoint.read_meta(train_dir / "1")
  assert meta["epoch"] == 1 and meta["step"] == 1 and meta["data_iterator"]["epoch"] == 0
  json.dumps(meta)
  assert checkpoint.fingerprint(checkpoint.load_variables(train_dir)) == summary["fingerprint"]
  variables = checkpoint.load_variables(train_dir)
  assert all(leaf.dtype == np.float32 for leaf in jax.tree_util.tree_leaves(variables["params"]))
  # Feedback: TensorBoard events and TAO's status lines with the KPIs.
  assert list((train_dir / log_lib.TENSORBOARD_SUBDIR).glob("events.out.tfevents.*"))
  records = log_lib.read_status(train_dir)
  assert [r["status"] for r in records] == ["STARTED", "RUNNING", "SUCCESS"]
  assert set(records[-1]["kpi"]) == {"train_loss", "val_3DIoU", "val_2DMPE"}
