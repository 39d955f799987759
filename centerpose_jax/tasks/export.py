"""export.py's task: a CenterPose checkpoint to TAO's ONNX (network + HeatmapDecoder).

The graph matches TAO's `CenterPoseWrapped` (reference-behavior §7): input `input` float32 [B, 3, H, W]
(normalised BGR, letterboxed as in training), outputs OUTPUT_NAMES with shapes [B, K, 4], [B, K, 1],
[B, K, 16], [B, K, 1], [B, K, 3], [B, K, 16], [B, K, 16] (K = export.num_select, TAO 100), all in
output-grid pixels (input pixels / down_ratio). Unlike TAO's trace, `kps_heatmap_mean` is computed (TAO's
is all -10000), exactly as `centerpose_jax.inference.decode` computes it.
"""

import collections
import importlib.metadata
import json
import pathlib
from typing import Dict, Mapping

import jax
import numpy as np
import onnx
from scipy import optimize

from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax import config as config_lib
from centerpose_jax import encryption
from centerpose_jax.export import onnx_export
from centerpose_jax.inference.onnx_predictor import INPUT_NAME
from centerpose_jax.inference.onnx_predictor import OUTPUT_NAMES
from centerpose_jax.inference.predict import predict_fn
from centerpose_jax.models import architecture
from centerpose_jax.models import conv
from centerpose_jax.models import create_model

INPUT_CHANNELS = 3  # BGR images
# Detections whose centre scores differ by less than this are near-ties: float rounding differences between
# onnxruntime and XLA (about 1e-6 on the scores) may list them in either order.
SCORE_TIE = 1e-5


def check_settings(config) -> None:
  """Raises ExportSettingsError for settings this model cannot be exported with (before loading weights)."""
  if config.export.input_channel != INPUT_CHANNELS:
    raise onnx_export.ExportSettingsError(
        f"export.input_channel={config.export.input_channel!r}: CenterPose takes {INPUT_CHANNELS}-channel "
        f"BGR images; set it to {INPUT_CHANNELS}")
  onnx_export.check_export_settings(config.export)


def _tie_groups(scores: np.ndarray):
  """Runs of consecutive positions of descending `scores` [K] whose neighbours differ by at most SCORE_TIE."""
  breaks = np.nonzero(-np.diff(scores) > SCORE_TIE)[0] + 1
  return np.split(np.arange(len(scores)), breaks)


def decoded_output_errors(onnx_outputs: Mapping[str, np.ndarray],
                          jax_outputs: Mapping[str, np.ndarray]) -> Dict[str, float]:
  """{name: max |ONNX - JAX|} of the decoder outputs (`abs_difference`), near-tied detections matched up to order.

  Within each group of detections whose JAX scores tie within SCORE_TIE, the ONNX rows are paired with the
  JAX rows by a minimum-cost assignment on the largest difference over all outputs, then compared. The last
  group may continue past position K (a tie with detections outside the top K), so it can hold different
  detections on the two sides: only its scores are compared. A shape mismatch gives inf.
  """
  if any(onnx_outputs[name].shape != jax_outputs[name].shape for name in OUTPUT_NAMES):
    return {name: float("inf") for name in OUTPUT_NAMES}
  errors = dict.fromkeys(OUTPUT_NAMES, 0.0)
  for item in range(jax_outputs["scores"].shape[0]):
    rows_onnx = np.concatenate([onnx_outputs[name][item] for name in OUTPUT_NAMES], axis=-1)
    rows_jax = np.concatenate([jax_outputs[name][item] for name in OUTPUT_NAMES], axis=-1)
    groups = _tie_groups(jax_outputs["scores"][item, :, 0])
    for group in groups:
      cost = onnx_export.abs_difference(rows_onnx[group][:, None, :], rows_jax[group][None, :, :]).max(axis=-1)
      onnx_rows, jax_rows = optimize.linear_sum_assignment(np.minimum(cost, np.finfo(np.float64).max))
      for name in OUTPUT_NAMES if group is not groups[-1] else ("scores",):
        difference = onnx_export.abs_difference(onnx_outputs[name][item, group[onnx_rows]],
                                                jax_outputs[name][item, group[jax_rows]])
        errors[name] = max(errors[name], float(difference.max(initial=0.0)))
  return errors


def export_metadata(config, checkpoint_fingerprint: str) -> Dict[str, str]:
  """metadata_props of the exported model: what a consumer needs to feed it and read its outputs."""
  export = config.export
  return {
      "model_name": config.model_name,
      "category": config.dataset.category,
      "backbone": config.model.backbone.model_type,
      "input_name": INPUT_NAME,
      "input_layout": "NCHW",
      "input_height": str(export.input_height),
      "input_width": str(export.input_width),
      "channel_order": "BGR",
      "mean_bgr": json.dumps(list(config.dataset.mean)),
      "std_bgr": json.dumps(list(config.dataset.std)),
      "normalisation": "x = (pixel / 255 - mean_bgr) / std_bgr, per BGR channel",
      "resize": ("letterbox: the image centre (W/2, H/2) onto the input centre, scaled by "
                 "min(input_width / W, input_height / H) (aspect ratio kept), zero (black) padding"),
      "down_ratio": str(config.model.down_ratio),
      "num_select": str(export.num_select),
      "output_units": "output-grid pixels (input pixels / down_ratio); keypoints interleaved x0, y0, x1, ...",
      "checkpoint": str(pathlib.Path(export.checkpoint).absolute()),
      "checkpoint_fingerprint": checkpoint_fingerprint,
      "exporter": f"centerpose_jax, jax2onnx {importlib.metadata.version('jax2onnx')}",
  }


def export_device(export_config):
  """The JAX device the export traces and verifies on: the CPU with `export.on_cpu`, else device `gpu_id`."""
  if export_config.on_cpu:
    return jax.devices("cpu")[0]
  devices = jax.devices()
  if not 0 <= export_config.gpu_id < len(devices):
    raise onnx_export.ExportSettingsError(
        f"export.gpu_id={export_config.gpu_id}: there are {len(devices)} {devices[0].platform} device(s), "
        f"indices 0..{len(devices) - 1}")
  return devices[export_config.gpu_id]


def graph_summary(model: onnx.ModelProto) -> str:
  """`export.verbose`'s print-out: inputs and outputs with their shapes, opset, and the node count per op."""
  def describe(values):
    return ", ".join(f"{v.name} [{', '.join(str(d.dim_param or d.dim_value) for d in v.type.tensor_type.shape.dim)}]"
                     for v in values)
  ops = collections.Counter(node.op_type for node in model.graph.node)
  lines = [f"graph {model.graph.name!r}: opset {[o.version for o in model.opset_import if o.domain == '']}, "
           f"{len(model.graph.node)} nodes, {len(model.graph.initializer)} initializers",
           f"  inputs: {describe(model.graph.input)}", f"  outputs: {describe(model.graph.output)}",
           "  ops: " + ", ".join(f"{op} {count}" for op, count in ops.most_common())]
  return "\n".join(lines)


def run(config) -> onnx_export.ExportResult:
  """Exports `config.export.checkpoint` to `config.export_onnx_file(config)` and verifies it (see `export_onnx`).

  The network is traced with XLA's own convolutions (`conv_impl` "native": ONNX Conv and ConvTranspose
  nodes); the written file is compared with the JAX model in its default formulation for this platform, so
  the check covers both the formulation switch and the export. With `encryption_key` set the file is
  encrypted. The tracing and the JAX side of the check run on `export_device`; `export.verbose` prints
  `graph_summary`.
  """
  check_settings(config)
  export = config.export
  onnx_file = config_lib.export_onnx_file(config)
  onnx_file.parent.mkdir(parents=True, exist_ok=True)
  model = create_model(config)
  with jax.default_device(export_device(export)):
    variables = checkpoint_lib.load_fitting_variables(export.checkpoint, architecture.expected_shapes(model),
                                                      config, encryption_key=config.encryption_key, model=model)
    result = onnx_export.export_onnx(
        predict_fn(create_model(config, conv_impl=conv.NATIVE), export.num_select), variables, export,
        onnx_file, output_names=OUTPUT_NAMES, input_name=INPUT_NAME, model_name=config.model_name,
        metadata=export_metadata(config, checkpoint_lib.fingerprint(variables)),
        reference_fn=predict_fn(model, export.num_select), compare_fn=decoded_output_errors,
        encryption_key=config.encryption_key or None)
  worst = max(result.errors, key=result.errors.get)
  print(f"export: wrote {result.path} ({result.file_bytes / 2**20:.1f} MiB, {result.num_nodes} nodes, "
        f"opset {export.opset_version}{', encrypted' if result.encrypted else ''}) in "
        f"{result.export_seconds:.0f} s; onnxruntime vs JAX max |diff| {result.errors[worst]:.2e} "
        f"({worst}) on a batch of {result.verification_batch}")
  if export.verbose:
    print(graph_summary(onnx.load_from_string(encryption.read_file(result.path, config.encryption_key or None))))
  return result
