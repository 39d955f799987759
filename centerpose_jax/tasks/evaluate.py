"""evaluate.py's task: the model (a checkpoint, or `evaluate.onnx_file` through onnxruntime) over
`dataset.test_data` (else `dataset.val_data`), every frame scored with the Objectron `Evaluator`
(`evaluation/scoring.py`), and `metrics.json`, `report.txt`, `per_image.csv` and the AP plots written to
`evaluate.results_dir` (default `results_dir/evaluate`).

The JAX model runs on the devices of `evaluate.num_gpus` / `evaluate.gpu_ids` (as training), each taking
`dataset.batch_size` frames of a batch.
"""

import time

import numpy as np
import tqdm

from centerpose_jax import config as config_lib
from centerpose_jax.data import loader
from centerpose_jax.evaluation import report
from centerpose_jax.evaluation.evaluator import Evaluator
from centerpose_jax.evaluation.scoring import score_batch
from centerpose_jax.inference.predictor import create_predictor


def run(config) -> dict:
  """Evaluates the configured model on the test (or validation) data; prints and writes the report.

  Returns:
    The evaluator's results (`Evaluator.finalize`) plus `output_dir`, `frames` and `seconds`.
  """
  data_path = config.dataset.test_data or config.dataset.val_data
  source = loader.check_dataset(loader.open_source(data_path), config.dataset, needs_evaluation=True).source
  predictor = create_predictor(config, "evaluate")
  evaluator = Evaluator.from_config(config)
  batch_size = predictor.batch_size or int(config.dataset.batch_size)
  start = time.perf_counter()
  batches = loader.iterate_eval_batches(source, config.dataset, batch_size=batch_size, with_targets=False,
                                        shard_index=0, shard_count=1)
  with tqdm.tqdm(total=len(source), unit="img", desc="evaluate") as bar:
    for batch in batches:
      score_batch(evaluator, predictor(batch["input"]), batch, config)
      bar.update(int(np.count_nonzero(batch["sample_weight"])))
  results = evaluator.finalize()
  out = config_lib.task_results_dir(config, "evaluate")
  report.write_report(results, out)
  print(report.format_report(results))
  seconds = time.perf_counter() - start
  print(f"evaluated {len(source)} images of {data_path} in {seconds:.1f} s -> {out}")
  return dict(results, output_dir=str(out), frames=len(source), seconds=seconds)
