"""ONNX export at TAO's size: export time, file size, parity with JAX and onnxruntime vs JAX latency.

  python bench/export_latency.py                         # DLA34 and fan_small, 512x512, opset 16
  python bench/export_latency.py --backbones DLA34 --size 512 --repeats 5

Per backbone: TAO's network filled by the reference fixtures' deterministic weight rule (real depth and
realistic activations, see fixtures/tao_reference/networks/README.md) is saved as a converted checkpoint and
exported by `tasks.export.run` (dynamic batch, constant folding), which verifies the file in onnxruntime on a
batch of 2. Then the median latency of --repeats calls at batch 1 of the network + decoder: onnxruntime
(CPU provider, the exported file) and JAX (jit, this backend's default formulation), after a warm-up call.
Needs the shared fixtures (set CENTERPOSE_FIXTURES if they are not in ../shared/fixtures).
"""

import argparse
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # configs/

import jax  # noqa: E402
import numpy as np  # noqa: E402

from centerpose_jax.convert import pytorch  # noqa: E402
from centerpose_jax.inference.predict import predict_fn  # noqa: E402
from centerpose_jax.tasks import export as export_task  # noqa: E402
from centerpose_jax.inference.onnx_predictor import OnnxPredictor  # noqa: E402
from centerpose_jax.models import create_model  # noqa: E402
from centerpose_jax.testing import weight_rule  # noqa: E402
from centerpose_jax.testing.variables import save_checkpoint  # noqa: E402
from configs import default  # noqa: E402

FIXTURES = pathlib.Path(os.environ.get("CENTERPOSE_FIXTURES", REPO.parent / "shared" / "fixtures"))


def median_seconds(call, repeats: int) -> float:
  call()  # warm-up (compiles / allocates)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    call()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def bench_backbone(backbone: str, size: int, opset: int, repeats: int, folder: pathlib.Path) -> dict:
  config = default.get_config()
  config.model.backbone.model_type = backbone
  state_dict = weight_rule.make_state_dict(FIXTURES / "tao_reference" / "networks" / f"keys_{backbone}.tsv")
  variables = pytorch.from_tao_state_dict(state_dict, backbone)
  config.export.checkpoint = str(save_checkpoint(folder / backbone, variables))
  config.export.onnx_file = str(folder / f"{backbone}.onnx")
  config.export.input_height = config.export.input_width = size
  config.export.opset_version = opset
  start = time.perf_counter()
  result = export_task.run(config)
  total_s = time.perf_counter() - start

  image = np.random.default_rng(0).standard_normal((1, size, size, 3)).astype(np.float32)
  predictor = OnnxPredictor(result.path, providers=["CPUExecutionProvider"])
  onnx_s = median_seconds(lambda: predictor(image), repeats)
  apply_fn = predict_fn(create_model(config), config.export.num_select)
  forward = jax.jit(apply_fn)
  jax_s = median_seconds(lambda: jax.block_until_ready(forward(variables, image)), repeats)
  return {"export s": result.export_seconds, "export+verify s": total_s, "MiB": result.file_bytes / 2**20,
          "nodes": result.num_nodes, "max err": max(result.errors.values()), "onnxruntime ms": 1e3 * onnx_s,
          "JAX ms": 1e3 * jax_s, "errors": result.errors}


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backbones", default="DLA34,fan_small", help="comma-separated: DLA34, fan_small, ...")
  parser.add_argument("--size", type=int, default=512, help="square input size in pixels")
  parser.add_argument("--opset", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args(argv)
  print(f"JAX backend {jax.default_backend()}, input {args.size}x{args.size}, opset {args.opset}")
  columns = ("export s", "export+verify s", "MiB", "nodes", "max err", "onnxruntime ms", "JAX ms")
  with tempfile.TemporaryDirectory() as folder:
    rows = {backbone: bench_backbone(backbone, args.size, args.opset, args.repeats, pathlib.Path(folder))
            for backbone in args.backbones.split(",")}
  print(("{:10s}" + " {:>15s}" * len(columns)).format("backbone", *columns))
  for backbone, row in rows.items():
    print(("{:10s}" + " {:>15.4g}" * len(columns)).format(backbone, *(row[c] for c in columns)))
  for backbone, row in rows.items():
    print(f"{backbone} per-output max |ONNX - JAX|: " + ", ".join(f"{k} {v:.2e}" for k, v in row["errors"].items()))


if __name__ == "__main__":
  main()
