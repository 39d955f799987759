"""Per-image inference latency by stage, and end-to-end images/s, at batch 1 on this backend.

  python bench/inference_latency.py                                  # DLA34 and fan_small at 512
  python bench/inference_latency.py --backbones DLA34 --size 256 --repeats 1
  python bench/inference_latency.py --backbones DLA34 --infer-py     # also infer.py per image, JAX and ONNX

Input: the real Objectron frames of fixtures/real/objectron_frames (six 600x800 PNGs; set CENTERPOSE_FIXTURES
if the fixtures are not in ../shared/fixtures), or --synthetic random 600x800 PNGs when they are absent.
Weights: random at the scale of a trained net (`centerpose_jax.testing.variables`). Such a net scores every
grid cell alike, so post-processing gets a per-image threshold that passes exactly the top --detections decoder
outputs to soft-NMS and PnP (TAO's 0.3 would pass all 100); the table gives how many survive PnP. Stages, each
timed as a pass over all images (median of --repeats passes after a warm-up pass that compiles), per image:
  read         cv2.imread of the file (PNG decode)
  preprocess   letterbox and normalise to the input size (`augment.letterbox_crop` + `augment.make_input`)
  forward      the network alone (jit)
  decode       the decoder alone on the forward's outputs (jit)
  fwd+decode   both under one jit, outputs fetched to the host (`JaxPredictor`, what infer.py runs)
  postprocess  inverse affine, threshold, soft-NMS and PnP (`postprocess_detections`)
  end-to-end   read + preprocess + fwd+decode + postprocess, one image after the other -> images/s

With --infer-py, the whole of infer.py (`tasks.infer.run`: read, letterbox, network + decoder, soft-NMS and
PnP, the JSON and the drawn image written per image) runs on the same weights saved as a checkpoint, with the
JAX model and with the ONNX export in onnxruntime, at a score threshold that passes --detections per image on
average: on one image (start-up: loading, compiling, the first image), on it again (compiled), and on it plus
the frames copied --infer-copies times; the per-image time is the difference of the last two over the added
images.
"""

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench/ shares median_seconds and FIXTURES

import cv2  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.export_latency import FIXTURES  # noqa: E402
from bench.export_latency import median_seconds  # noqa: E402
from centerpose_jax import geometry  # noqa: E402
from centerpose_jax.data import augment  # noqa: E402
from centerpose_jax.inference import decode  # noqa: E402
from centerpose_jax.inference import postprocess_detections  # noqa: E402
from centerpose_jax.inference.predictor import JaxPredictor  # noqa: E402
from centerpose_jax.models import create_model  # noqa: E402
from centerpose_jax.tasks import export as export_task  # noqa: E402
from centerpose_jax.tasks import infer as infer_task  # noqa: E402
from centerpose_jax.testing.variables import random_variables  # noqa: E402
from centerpose_jax.testing.variables import save_checkpoint  # noqa: E402
from configs import default  # noqa: E402

# The CenterPose demo's default intrinsics of the fixture frames (fixtures/real/README.md), pixels.
CAMERA_K = geometry.camera_matrix(663.0287679036459, 663.0287679036459, 300.2775065104167, 395.00066121419275)
SYNTHETIC_IMAGES, SYNTHETIC_H, SYNTHETIC_W = 6, 800, 600
COLUMNS = ("read", "preprocess", "forward", "decode", "fwd+decode", "postprocess")


def image_paths(folder: pathlib.Path, synthetic: bool):
  """The fixture frames, or (with `synthetic`, when they are absent) random PNGs written to `folder`."""
  frames = sorted((FIXTURES / "real" / "objectron_frames").glob("*.png"))
  if frames:
    return frames, "real Objectron frames"
  if not synthetic:
    raise SystemExit(f"no frames in {FIXTURES / 'real' / 'objectron_frames'}: set CENTERPOSE_FIXTURES or pass "
                     "--synthetic")
  rng = np.random.default_rng(0)
  paths = [folder / f"random_{i}.png" for i in range(SYNTHETIC_IMAGES)]
  for path in paths:
    cv2.imwrite(str(path), rng.integers(0, 256, (SYNTHETIC_H, SYNTHETIC_W, 3), dtype=np.uint8))
  return paths, "random images"


def top_k_threshold(scores: np.ndarray, count: int) -> float:
  """A score threshold between the `count`-th and the next highest of `scores` [K, 1]."""
  ordered = np.sort(scores.reshape(-1))[::-1]
  return float((ordered[count - 1] + ordered[count]) / 2)


def network_input(frame, size: int, data):
  """(input [1, size, size, 3] float32, crop center, crop scale) of a BGR frame letterboxed as infer.py does."""
  crop = augment.letterbox_crop(frame.shape[1], frame.shape[0], input_size=(size, size))
  return augment.make_input(frame, crop, (size, size), data.mean, data.std)[None], crop.center, crop.scale


def bench_backbone(backbone: str, size: int, paths, detections: int, repeats: int) -> dict:
  """{stage: ms per image} (see the module docstring), plus "kept" (mean detections) and "images/s"."""
  config = default.get_config()
  config.model.backbone.model_type = backbone
  model = create_model(config)
  variables = jax.device_put(random_variables(model, (size, size)))
  settings, data = config.inference, config.dataset
  output_size = (size // config.model.down_ratio,) * 2

  def read(path):
    return cv2.imread(str(path), cv2.IMREAD_COLOR)

  def preprocess(frame):
    return network_input(frame, size, data)

  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  decoder = jax.jit(lambda heads: decode(heads, num_select=settings.num_select))
  predict = JaxPredictor(model, variables, batch_size=1, num_select=settings.num_select)

  frames = [read(path) for path in paths]
  inputs = [preprocess(frame) for frame in frames]
  heads = [jax.block_until_ready(forward(variables, x)) for x, _, _ in inputs]
  decoded = [predict(x) for x, _, _ in inputs]
  thresholds = [top_k_threshold(d["scores"][0], detections) for d in decoded]

  def postprocess(i, outputs):
    _, center, scale = inputs[i]
    return postprocess_detections({name: value[0] for name, value in outputs.items()}, center, scale,
                                  output_size, CAMERA_K, threshold=thresholds[i], opencv=settings.opencv,
                                  use_pnp=settings.use_pnp, pnp_keypoints=settings.pnp_keypoints)

  def end_to_end():
    for i, path in enumerate(paths):
      x, _, _ = preprocess(read(path))
      postprocess(i, predict(x))

  stages = {
      "read": lambda: [read(path) for path in paths],
      "preprocess": lambda: [preprocess(frame) for frame in frames],
      "forward": lambda: [jax.block_until_ready(forward(variables, x)) for x, _, _ in inputs],
      "decode": lambda: [jax.block_until_ready(decoder(h)) for h in heads],
      "fwd+decode": lambda: [predict(x) for x, _, _ in inputs],
      "postprocess": lambda: [postprocess(i, d) for i, d in enumerate(decoded)],
  }
  row = {name: 1e3 * median_seconds(stage, repeats) / len(paths) for name, stage in stages.items()}
  row["kept"] = float(np.mean([len(postprocess(i, d)) for i, d in enumerate(decoded)]))
  row["images/s"] = len(paths) / median_seconds(end_to_end, repeats)
  return row


def infer_py_per_image(backbone: str, size: int, paths, detections: int, copies: int, folder: pathlib.Path):
  """{runtime: (start-up s, ms per image)} of infer.py with the JAX model and with its ONNX export."""
  config = default.get_config()
  config.model.backbone.model_type = backbone
  config.dataset.input_res, config.dataset.output_res = size, size // 4
  config.dataset.batch_size = 1
  inference = config.inference
  inference.focal_length_x, inference.focal_length_y = float(CAMERA_K[0, 0]), float(CAMERA_K[1, 1])
  inference.principle_point_x, inference.principle_point_y = float(CAMERA_K[0, 2]), float(CAMERA_K[1, 2])
  variables = random_variables(create_model(config), (size, size))
  config.inference.checkpoint = config.export.checkpoint = str(save_checkpoint(folder / "checkpoint", variables))
  config.export.onnx_file = str(folder / f"{backbone}.onnx")
  config.export.input_height = config.export.input_width = size
  export_task.run(config)
  predict = JaxPredictor(create_model(config), jax.device_put(variables), batch_size=1,
                         num_select=config.inference.num_select)
  scores = [predict(network_input(cv2.imread(str(path), cv2.IMREAD_COLOR), size, config.dataset)[0])["scores"][0]
            for path in paths]
  config.inference.visualization_threshold = float(np.median([top_k_threshold(s, detections) for s in scores]))
  one, many = folder / "one", folder / "many"
  for target, count in ((one, 0), (many, copies)):
    target.mkdir()
    shutil.copy(paths[0], target / f"first{paths[0].suffix}")
    for copy in range(count):
      for path in paths:
        shutil.copy(path, target / f"{copy}_{path.name}")
  results = {}
  for runtime, onnx_file in (("JAX", ""), ("onnxruntime", config.export.onnx_file)):
    config.inference.onnx_file = onnx_file
    seconds = []
    for i, target in enumerate((one, one, many)):  # the first run compiles (JAX caches it for the next ones)
      config.dataset.inference_data = str(target)
      config.results_dir = str(folder / f"results_{runtime}_{i}")
      seconds.append(infer_task.run(config)["seconds"])
    results[runtime] = (seconds[0], 1e3 * (seconds[2] - seconds[1]) / (copies * len(paths)))
  return results


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--backbones", default="DLA34,fan_small", help="comma-separated: DLA34, fan_small, ...")
  parser.add_argument("--size", type=int, default=512, help="square input size in pixels (multiple of 32)")
  parser.add_argument("--repeats", type=int, default=3, help="timed passes over the images per stage")
  parser.add_argument("--detections", type=int, default=10, help="decoder outputs passed to soft-NMS and PnP")
  parser.add_argument("--synthetic", action="store_true", help="random images when the fixtures are absent")
  parser.add_argument("--infer-py", action="store_true", help="also time infer.py per image (JAX and ONNX)")
  parser.add_argument("--infer-copies", type=int, default=2, help="copies of the frames infer.py runs on")
  args = parser.parse_args(argv)
  with tempfile.TemporaryDirectory() as folder:
    paths, source = image_paths(pathlib.Path(folder), args.synthetic)
    print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {len(paths)} {source}, input "
          f"{args.size}x{args.size}, batch 1, {args.detections} detections to PnP; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(("{:10s}" + " {:>12s}" * (len(COLUMNS) + 2)).format(
        "backbone", *(f"{c} ms" for c in COLUMNS), "kept", "images/s"))
    for backbone in args.backbones.split(","):
      row = bench_backbone(backbone, args.size, paths, args.detections, args.repeats)
      print(("{:10s}" + " {:>12.2f}" * (len(COLUMNS) + 2)).format(
          backbone, *(row[c] for c in COLUMNS), row["kept"], row["images/s"]), flush=True)
    if args.infer_py:
      print("infer.py (threshold passing about --detections per image; JSON and drawn image written):")
      for backbone in args.backbones.split(","):
        with tempfile.TemporaryDirectory() as work:
          for runtime, (startup, per_image) in infer_py_per_image(
              backbone, args.size, paths, args.detections, args.infer_copies, pathlib.Path(work)).items():
            print(f"  {backbone:10s} {runtime:12s} start-up and first image {startup:6.1f} s, then "
                  f"{per_image:8.1f} ms per image", flush=True)


if __name__ == "__main__":
  main()
