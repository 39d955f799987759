"""The one predict function on a device mesh: 8 fake CPU devices give the same detections as 1 device, and the
evaluate / inference sections' num_gpus / gpu_ids select the devices with training's rule."""

import json
import os
import pathlib
import subprocess
import sys

from centerpose_jax import config as config_lib
from centerpose_jax import config_validation

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_eight_devices_predict_and_evaluate_as_one(tmp_path):
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu",
             PYTHONPATH=str(REPO))
  result = subprocess.run([sys.executable, str(HERE / "multi_device_run.py"), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["device_count"] == 8
  # TAO's rule, as for train: whichever of num_gpus / gpu_ids asks for more devices.
  assert report["devices"] == {"eval_8": list(range(8)), "eval_ids": [2, 5], "infer_3": [0, 1, 2], "infer_1": [0]}
  # 13 images: 16 slots on 8 devices (2 each, 3 padding) against one device taking all 13.
  assert report["batch_sizes"] == [16, 13]
  assert report["shapes"]["scores"] == [13, 100, 1] and report["shapes"]["kps_displacement_mean"] == [13, 100, 16]
  assert report["max_score"] > 0.1  # real detections, not an all-zero output
  assert report["decoded_max_diff"] <= 1e-5, report
  # evaluate.py on 8 devices (5 frames: one batch of 16 slots) scores what it scores on 1.
  on_eight, on_one = report["evaluate"]["8"], report["evaluate"]["1"]
  assert on_eight["frames"] == on_one["frames"] == 5
  assert on_eight["headline"].keys() == on_one["headline"].keys()
  for key, value in on_one["headline"].items():
    assert abs(on_eight["headline"][key] - value) <= 1e-5, (key, on_eight["headline"], on_one["headline"])


def test_evaluate_and_infer_check_their_device_settings():
  config = config_lib.get_config()
  config.evaluate.num_gpus, config.inference.gpu_ids = 0, (-1,)
  evaluate = "\n".join(config_validation.collect_problems(config, "evaluate"))
  infer = "\n".join(config_validation.collect_problems(config, "infer"))
  assert "evaluate.num_gpus: got 0, expected a positive number (or -1 for all)" in evaluate
  assert "inference.gpu_ids: got [-1], expected device indices >= 0" in infer
