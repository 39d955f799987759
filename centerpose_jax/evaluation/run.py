"""evaluate.py's library side, and the per-batch scoring that training's validation shares with it.

`evaluate(config)` runs the model (a checkpoint, or `evaluate.onnx_file` through onnxruntime) over
`dataset.test_data` (else `dataset.val_data`), scores every frame with the Objectron `Evaluator` and writes
`metrics.json`, `report.txt`, `per_image.csv` and the AP plots to `evaluate.results_dir`
(default `results_dir/evaluate`).
"""

import time
from typing import Dict, List

import numpy as np
import tqdm

from centerpose_jax import config as config_lib
from centerpose_jax.data import loader
from centerpose_jax.evaluation.evaluator import Evaluator
from centerpose_jax.inference.postprocess import postprocess_detections


def score_batch(evaluator: Evaluator, decoded: Dict[str, np.ndarray], batch: dict, config) -> List[list]:
  """Post-processes one evaluation batch and adds each real frame to `evaluator`.

  Args:
    evaluator: receives one `add_frame` per sample whose `sample_weight` is not 0.
    decoded: the decoder's outputs for the batch, numpy, leading axis B (output-grid units).
    batch: an `loader.iterate_eval_batches` batch (its `center`, `crop_scale`, `camera_k`, `annotation`,
      `image_path`, `sample_weight`).
    config: the whole config: `inference.visualization_threshold` and `inference.pnp_keypoints` select and
      solve the detections, `evaluate.opencv` chooses the PnP frame as in TAO (False, the Objectron OpenGL
      frame, is what the metrics expect).

  Returns:
    The detections of each sample (see `postprocess_detections`); an empty list for padding samples.
  """
  output_size = config_lib.output_size(config.dataset)
  per_sample = []
  for i, weight in enumerate(batch["sample_weight"]):
    if weight == 0:
      per_sample.append([])
      continue
    one = {name: value[i] for name, value in decoded.items()}
    detections = postprocess_detections(
        one, batch["center"][i], float(batch["crop_scale"][i]), output_size, batch["camera_k"][i],
        threshold=config.inference.visualization_threshold, opencv=config.evaluate.opencv,
        pnp_keypoints=config.inference.pnp_keypoints)
    predictions = [{"projected_points": d["projected_keypoints_2d"], "point_3d_cam": d["keypoints_3d"],
                    "obj_scale": d["relative_scale"], "score": d["score"]} for d in detections]
    camera = batch["annotation"][i].get("camera_data", {})
    size = {}  # the JSON's camera_data.width/height, as TAO; the decoded image's when the JSON has none
    if "width" not in camera or "height" not in camera:
      size = {"width": batch["width"][i], "height": batch["height"][i]}
    evaluator.add_frame(predictions, batch["annotation"][i], image_id=batch["image_path"][i], **size)
    per_sample.append(detections)
  return per_sample


def evaluate(config) -> dict:
  """Evaluates the configured model on the test (or validation) data; prints and writes the report.

  Returns:
    The evaluator's results (`Evaluator.finalize`) plus `output_dir`, `frames` and `seconds`.
  """
  # Imported here: the report pulls in matplotlib and the predictor jax/onnxruntime, which the validation
  # path (score_batch) does not need.
  from centerpose_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  from centerpose_jax.inference.predictor import create_predictor  # pylint: disable=g-import-not-at-top

  data_path = config.dataset.test_data or config.dataset.val_data
  source = loader.check_dataset(loader.open_source(data_path), config.dataset, needs_evaluation=True).source
  predict = create_predictor(config, "evaluate")
  evaluator = Evaluator.from_config(config)
  batch_size = int(config.dataset.batch_size)
  start = time.perf_counter()
  batches = loader.iterate_eval_batches(source, config.dataset, batch_size=batch_size, with_targets=False,
                                        shard_index=0, shard_count=1)
  with tqdm.tqdm(total=len(source), unit="img", desc="evaluate") as bar:
    for batch in batches:
      score_batch(evaluator, predict(batch["input"]), batch, config)
      bar.update(int(np.count_nonzero(batch["sample_weight"])))
  results = evaluator.finalize()
  out = config_lib.task_results_dir(config, "evaluate")
  report.write_report(results, out)
  print(report.format_report(results))
  seconds = time.perf_counter() - start
  print(f"evaluated {len(source)} images of {data_path} in {seconds:.1f} s -> {out}")
  return dict(results, output_dir=str(out), frames=len(source), seconds=seconds)
