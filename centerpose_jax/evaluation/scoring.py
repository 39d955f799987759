"""Scoring of evaluation batches: one batch's decoded outputs post-processed (image pixels, soft-NMS, PnP) and each
real frame added to an Objectron `Evaluator`. Shared by evaluate.py (`tasks/evaluate.py`) and training's
validation (`tasks/train.py`).
"""

from typing import Dict, List

import numpy as np

from centerpose_jax import config as config_lib
from centerpose_jax.evaluation.evaluator import Evaluator
from centerpose_jax.inference.detection import Detection
from centerpose_jax.inference.postprocess import postprocess_detections


def score_batch(evaluator: Evaluator, decoded: Dict[str, np.ndarray], batch: dict,
                config) -> List[List[Detection]]:
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
    camera = batch["annotation"][i].get("camera_data", {})
    size = {}  # the JSON's camera_data.width/height, as TAO; the decoded image's when the JSON has none
    if "width" not in camera or "height" not in camera:
      size = {"width": batch["width"][i], "height": batch["height"][i]}
    evaluator.add_frame(detections, batch["annotation"][i], image_id=batch["image_path"][i], **size)
    per_sample.append(detections)
  return per_sample
