"""The converter's output of the fixture sequence feeds the evaluator exactly, trains for a step and evaluates.

The whole bottle sequence (119 frames, every 15th: 8 frames) is converted from a 144x192 video (60x80 frames).
Training uses the stand-in model of tests/training (`TinyCenterPose`) so that the step compiles in seconds;
everything else (loader, targets with the bottle's 12 symmetric copies, loss, checkpoint, validation, the
evaluate task) is the real code.
"""

import json

import numpy as np
import pytest

from centerpose_jax.data import loader
from centerpose_jax.evaluation import Evaluator
from centerpose_jax.evaluation import scoring
from centerpose_jax.tasks import evaluate as evaluate_task
from centerpose_jax.models import registry
from centerpose_jax.objectron import convert
from centerpose_jax.tasks import train as train_task
from helpers import oracle_decoded
from centerpose_jax.testing import objectron_release as fixture
from training.standin import tiny_config


@pytest.fixture(scope="module")
def converted(real_fixtures, tmp_path_factory):
  root = tmp_path_factory.mktemp("objectron")
  fixture.write_release(root / "src", fixture.bottle_scene(real_fixtures, downscale=10))
  summary = convert.convert(root / "src", "bottle", "train", root / "out", progress=False)
  assert summary["frames"] == 8 and summary["objects"] == 8
  return root


def _config(root, results):
  config = tiny_config(root / "out", root / results, num_epochs=1, validation_interval=1, checkpoint_interval=1)
  config.dataset.train_data = config.dataset.val_data = config.dataset.test_data = str(root / "out" / "train")
  config.dataset.category = "bottle"
  config.dataset.batch_size = 8
  return config


def test_evaluator_scores_the_labels_against_themselves_perfectly(converted):
  config = _config(converted, "oracle")
  source = loader.open_source(config.dataset.test_data)
  evaluator = Evaluator.from_config(config)
  for batch in loader.iterate_eval_batches(source, config.dataset, with_targets=False, shard_index=0,
                                           shard_count=1, workers=0):
    scoring.score_batch(evaluator, oracle_decoded(batch, config.dataset.output_res), batch, config)
  results = evaluator.finalize()
  # PnP on the labelled corners with the labelled intrinsics gives back the labelled boxes, and the ground
  # plane gives back their metric size: only the 16-pixel grid's rounding is left.
  assert len(results["per_image"]) == 8
  assert results["headline"]["3DIoU_AP@0.5"] > 0.95
  assert results["headline"]["2DMPE"] < 0.01


def test_trains_one_step_and_evaluates(converted):
  config = _config(converted, "results")
  config.model.backbone.model_type = registry.TINY

  summary = train_task.run(config)

  assert summary["steps"] == 1 and np.isfinite(summary["train_loss"])
  assert "val_3DIoU" in summary and summary["checkpoint"]
  config.evaluate.checkpoint = summary["checkpoint"]
  results = evaluate_task.run(config)
  assert results["frames"] == 8
  metrics = json.loads((converted / "results" / "evaluate" / "metrics.json").read_text())
  assert set(metrics["headline"]) >= {"3DIoU_AP@0.5", "2DMPE"}
