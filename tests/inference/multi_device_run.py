"""The predictor and evaluate.py on 8 fake CPU devices against 1 device, as tests/inference/test_multi_device.py's
subprocess (run with XLA_FLAGS=--xla_force_host_platform_device_count=8).

  python multi_device_run.py WORKDIR

Prints one JSON line: the devices each config selected, the largest difference of the decoded outputs of 13
images (8 devices x 2 per device = 16, so 3 are padding) between 8 devices and 1, and evaluate.py's headline
metrics and frame counts on 8 devices and on 1.
"""

import json
import pathlib
import sys

import jax
import numpy as np

from centerpose_jax import config as config_lib
from centerpose_jax.data import synthetic
from centerpose_jax.inference.predictor import create_predictor
from centerpose_jax.models import create_model
from centerpose_jax.models import registry
from centerpose_jax.tasks import evaluate as evaluate_task
from centerpose_jax.testing.variables import random_variables
from centerpose_jax.testing.variables import save_checkpoint

INPUT = 64
IMAGES = 13


def main():
  workdir = pathlib.Path(sys.argv[1])
  synthetic.generate_dataset(workdir / "data", "cereal_box", num_train=0, num_val=5, seed=3, width=120, height=160)
  config = config_lib.get_config()
  config.model.backbone.model_type = registry.TINY
  config.dataset.input_res, config.dataset.output_res = INPUT, INPUT // 4
  config.dataset.workers = 0
  config.dataset.test_data = str(workdir / "data" / "val")
  config.inference.visualization_threshold = 0.0  # random weights score low: keep their top detections
  config.results_dir = str(workdir / "results")
  checkpoint = save_checkpoint(workdir / "ckpt", random_variables(create_model(config), (INPUT, INPUT)))
  config.evaluate.checkpoint = config.inference.checkpoint = str(checkpoint)

  report = {"devices": {}}
  for name, section, num_gpus, gpu_ids in (("eval_8", "evaluate", 8, (0,)), ("eval_ids", "evaluate", 1, (2, 5)),
                                           ("infer_3", "inference", 3, (0,)), ("infer_1", "inference", 1, (0,))):
    config[section].num_gpus, config[section].gpu_ids = num_gpus, gpu_ids
    predictor = create_predictor(config, section)
    report["devices"][name] = [device.id for device in predictor.mesh.devices.flat]

  inputs = np.random.default_rng(0).standard_normal((IMAGES, INPUT, INPUT, 3)).astype(np.float32)
  config.dataset.batch_size = 2
  config.evaluate.num_gpus, config.evaluate.gpu_ids = 8, (0,)
  eight = create_predictor(config, "evaluate")
  config.evaluate.num_gpus = 1
  config.dataset.batch_size = IMAGES
  one = create_predictor(config, "evaluate")
  on_eight, on_one = eight(inputs), one(inputs)
  report["batch_sizes"] = [eight.batch_size, one.batch_size]
  report["shapes"] = {key: list(value.shape) for key, value in on_eight.items()}
  report["decoded_max_diff"] = max(float(np.max(np.abs(on_eight[key] - on_one[key]))) for key in on_one)
  report["max_score"] = float(on_one["scores"].max())

  evaluations = {}
  for num_gpus in (8, 1):
    config.evaluate.num_gpus, config.dataset.batch_size = num_gpus, 2
    config.evaluate.results_dir = str(workdir / f"evaluate_{num_gpus}")
    results = evaluate_task.run(config)
    evaluations[num_gpus] = {"frames": results["frames"], "headline": results["headline"]}
  report["evaluate"] = evaluations
  report["device_count"] = jax.device_count()
  print(json.dumps(report))


if __name__ == "__main__":
  main()
