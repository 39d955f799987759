"""ONNX export of a JAX image model with jax2onnx: graph fix-ups, constant folding, checks and verification.

`export_onnx` traces `apply_fn(variables, x)` (NHWC inside JAX) behind an NCHW input, writes the ONNX file
and then runs the written file in onnxruntime against the JAX function on a test input; any output further
than the tolerance fails the export and removes the file.

Shape labels (the cause of "Add: Incompatible dimensions"): jax2onnx 0.17.1 lowers a linen BatchNorm on NHWC
data as Transpose(NHWC->NCHW) -> BatchNormalization -> Transpose(NCHW->NHWC) and gives the
BatchNormalization output a dtype but no shape. Its `remove_redundant_transpose_pairs` pass then cancels the
transposes between Conv, BatchNormalization, Relu and the residual Add, moving those elementwise nodes to
NCHW; it re-derives each moved node's output shape from its inputs, which it cannot do for inputs without a
shape, so the Relu/Add outputs keep their old NHWC labels in `graph.value_info`. onnxruntime trusts these
labels: it warns on the Relu outputs and refuses the file at the first Add whose two inputs carry
contradicting NCHW/NHWC labels (a residual block whose shortcut is a projection conv). The labels only
contradict each other when height, width and channels differ, so square inputs with C == H hide it.
`relabel_shapes` drops every intermediate label and recomputes them with onnx's strict shape inference.
"""

import contextlib
import dataclasses
import logging
import pathlib
import tempfile
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from jax2onnx import to_onnx

from centerpose_jax import encryption
from centerpose_jax import errors

# Opsets that export and run: jax2onnx emits Squeeze/Unsqueeze with axes as an input (opset >= 13);
# 25 is the highest checked with onnxruntime 1.32. TAO exports opset 16.
MIN_OPSET = 13
MAX_OPSET = 25
DYNAMIC_BATCH_AXIS = "batch_size"  # TAO's name of the dynamic axis 0
DEFAULT_TOLERANCE = 1e-4  # max |ONNX - JAX| allowed on every output
VERIFICATION_BATCH = 2  # batch of the test input when the batch axis is dynamic (not 1, to exercise it)
# Reduce operators whose `axes` is an attribute before opset 18 (ReduceSum moved to an input at 13).
REDUCE_OPS_WITH_AXES_ATTRIBUTE = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                  "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
REDUCE_AXES_INPUT_OPSET = 18

# (variables, x [B, H, W, C]) -> {output name: array}.
ApplyFn = Callable[[Any, jax.Array], Mapping[str, jax.Array]]
# (ONNX outputs, JAX outputs), both {name: numpy array} -> {name: error}.
CompareFn = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], Dict[str, float]]


class ExportSettingsError(errors.CenterPoseError, ValueError):
  """Export settings the exporter cannot honour; the message names the field and what is allowed."""


class ExportVerificationError(errors.CenterPoseError, RuntimeError):
  """The written ONNX does not reproduce the JAX model; the file has been removed."""


@dataclasses.dataclass(frozen=True)
class ExportResult:
  """What `export_onnx` wrote and measured.

  Attributes:
    path: the written file.
    errors: {output name: error of the written file against JAX (`compare_fn`)} on the verification input.
    verification_batch: batch size of the verification input.
    num_nodes: nodes of the written graph.
    file_bytes: size of the written file (encrypted size when encrypted).
    export_seconds: tracing, fix-ups, folding and checking (not verification).
    encrypted: whether the file is encrypted with the encryption key.
  """
  path: pathlib.Path
  errors: Dict[str, float]
  verification_batch: int
  num_nodes: int
  file_bytes: int
  export_seconds: float
  encrypted: bool


def check_export_settings(export_config) -> None:
  """Raises ExportSettingsError unless `export_config` (config.export) can be exported as asked."""
  opset = export_config.opset_version
  if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
    raise ExportSettingsError(f"export.opset_version={opset!r}: supported opsets are {MIN_OPSET}..{MAX_OPSET} "
                              "(TAO uses 16; pick one your TensorRT release's ONNX parser reads)")
  batch_size = export_config.batch_size
  if not isinstance(batch_size, int) or batch_size == 0 or batch_size < -1:
    raise ExportSettingsError(f"export.batch_size={batch_size!r}: use -1 for a dynamic batch axis or a "
                              "positive number for a static one")
  for name in ("input_height", "input_width", "input_channel"):
    value = export_config[name]
    if not isinstance(value, int) or value <= 0:
      raise ExportSettingsError(f"export.{name}={value!r}: expected a positive number")


def input_shape(export_config):
  """The ONNX input shape (batch, C, H, W); batch is DYNAMIC_BATCH_AXIS when export.batch_size is -1."""
  batch = DYNAMIC_BATCH_AXIS if export_config.batch_size == -1 else export_config.batch_size
  return (batch, export_config.input_channel, export_config.input_height, export_config.input_width)


def nchw_function(apply_fn: ApplyFn, output_names: Sequence[str]):
  """(variables, x [B, C, H, W]) -> tuple of outputs in `output_names` order, computing apply_fn in NHWC."""

  def forward(variables, x_nchw):
    outputs = apply_fn(variables, jnp.transpose(x_nchw, (0, 2, 3, 1)))
    missing = set(output_names) - set(outputs)
    if missing:
      raise KeyError(f"apply_fn returned {sorted(outputs)}, missing {sorted(missing)}")
    return tuple(outputs[name] for name in output_names)

  return forward


# Logger levels while tracing: jax2onnx logs its plugin discovery at INFO (visible under absl) and onnx_ir warns
# once per constant shape tensor that its value type is not known.
_EXPORT_LOG_LEVELS = {"jax2onnx": logging.WARNING, "onnx_ir": logging.WARNING, "onnx_ir.serde": logging.ERROR}


@contextlib.contextmanager
def _quiet_exporter():
  """Raises the levels of jax2onnx's and onnx_ir's loggers to _EXPORT_LOG_LEVELS, then restores them."""
  loggers = {name: logging.getLogger(name) for name in _EXPORT_LOG_LEVELS}
  previous = {name: logger.level for name, logger in loggers.items()}
  for name, logger in loggers.items():
    logger.setLevel(_EXPORT_LOG_LEVELS[name])
  try:
    yield
  finally:
    for name, logger in loggers.items():
      logger.setLevel(previous[name])


def reduce_axes_as_attributes(model: onnx.ModelProto) -> onnx.ModelProto:
  """`model` with the constant `axes` input of its Reduce* nodes moved to the attribute older opsets need.

  Below opset 18 every Reduce* operator except ReduceSum takes `axes` as an attribute, but jax2onnx 0.17.1
  lowers `jnp.mean` to ReduceMean with an `axes` input at every opset, which onnx.checker and onnxruntime
  reject. Models at opset 18 or later are returned unchanged.

  Raises:
    ExportSettingsError: when such an `axes` input is not a constant (only opset >= 18 can express it).
  """
  opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
  if opset >= REDUCE_AXES_INPUT_OPSET:
    return model
  constants = {tensor.name: tensor for tensor in model.graph.initializer}
  constants.update({node.output[0]: attribute.t for node in model.graph.node if node.op_type == "Constant"
                    for attribute in node.attribute if attribute.name == "value"})
  for node in model.graph.node:
    if node.op_type not in REDUCE_OPS_WITH_AXES_ATTRIBUTE or len(node.input) < 2 or not node.input[1]:
      continue
    if node.input[1] not in constants:
      raise ExportSettingsError(f"{node.op_type} node {node.name!r} reduces over computed axes, which opset "
                                f"{opset} cannot express; use export.opset_version >= {REDUCE_AXES_INPUT_OPSET}")
    axes = onnx.numpy_helper.to_array(constants[node.input[1]]).reshape(-1).tolist()
    del node.input[1:]
    node.attribute.append(onnx.helper.make_attribute("axes", [int(axis) for axis in axes]))
  return model


def relabel_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
  """`model` with every intermediate shape label (graph.value_info) recomputed by strict shape inference.

  Removes the stale NHWC labels jax2onnx leaves after BatchNormalization (module docstring); graph inputs
  and outputs keep their declared shapes, and inference fails loudly if they contradict the graph.
  """
  model.graph.ClearField("value_info")
  return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
  """`model` after onnxruntime's basic (portable, standard-ops-only) offline graph optimisation.

  Folds constant subgraphs, BatchNormalization and constant Mul/Add into the preceding Conv weights, and
  drops identities and redundant transposes; the result uses only standard ONNX ops of the same opset
  (the operator-set imports onnxruntime adds for its own domains are removed again).
  """
  options = ort.SessionOptions()
  options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
  with tempfile.TemporaryDirectory() as folder:
    options.optimized_model_filepath = str(pathlib.Path(folder) / "folded.onnx")
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    folded = onnx.load(options.optimized_model_filepath)
  used_domains = {node.domain for node in folded.graph.node} | {""}
  kept = [opset for opset in folded.opset_import if opset.domain in used_domains]
  del folded.opset_import[:]
  folded.opset_import.extend(kept)
  return folded


def _check_interface(model: onnx.ModelProto, input_name: str, shape, output_names: Sequence[str]) -> None:
  inputs = [value.name for value in model.graph.input]
  outputs = [value.name for value in model.graph.output]
  if inputs != [input_name] or outputs != list(output_names):
    raise RuntimeError(f"exported graph has inputs {inputs} and outputs {outputs}, expected [{input_name!r}] "
                       f"and {list(output_names)}")
  dims = model.graph.input[0].type.tensor_type.shape.dim
  declared = tuple(d.dim_param or d.dim_value for d in dims)
  if declared != tuple(shape):
    raise RuntimeError(f"exported input {input_name!r} has shape {declared}, expected {tuple(shape)}")


def verification_input(shape, seed: int = 0) -> np.ndarray:
  """A deterministic float32 test input [B, C, H, W] like a normalised image (standard normal values);
  a dynamic batch axis gets VERIFICATION_BATCH."""
  batch = VERIFICATION_BATCH if isinstance(shape[0], str) else shape[0]
  return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape[1:])).astype(np.float32)


def abs_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """|a - b| in float64, 0 where both are equal (infinities included) or both NaN, inf where one is NaN."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  with np.errstate(invalid="ignore"):
    difference = np.abs(a - b)
  difference = np.where((a == b) | (np.isnan(a) & np.isnan(b)), 0.0, difference)
  return np.where(np.isnan(difference), np.inf, difference)


def max_abs_errors(onnx_outputs: Mapping[str, np.ndarray],
                   jax_outputs: Mapping[str, np.ndarray]) -> Dict[str, float]:
  """{name: max `abs_difference`} over every element; inf when the shapes differ."""
  errors = {}
  for name, from_jax in jax_outputs.items():
    from_onnx = onnx_outputs[name]
    if from_onnx.shape != from_jax.shape:
      errors[name] = float("inf")
    else:
      errors[name] = float(np.max(abs_difference(from_onnx, from_jax), initial=0.0))
  return errors


def export_onnx(apply_fn: ApplyFn, variables, export_config, out_path, *, output_names: Sequence[str],
                input_name: str = "input", model_name: str = "model",
                metadata: Optional[Mapping[str, str]] = None, reference_fn: Optional[ApplyFn] = None,
                test_input: Optional[np.ndarray] = None, tolerance: float = DEFAULT_TOLERANCE,
                compare_fn: CompareFn = max_abs_errors,
                encryption_key: Optional[encryption.Key] = None) -> ExportResult:
  """Exports `apply_fn(variables, .)` to ONNX at `out_path`, then verifies the written file.

  The graph takes `input_name` float32 [batch, C, H, W] (NCHW; transposed to NHWC inside the graph) with
  batch the axis DYNAMIC_BATCH_AXIS or a static size, and returns the float32 outputs `output_names`.

  Args:
    apply_fn: (variables, x [B, H, W, C]) -> {name: array}; everything it computes must export (see
      DESIGN.md for jax2onnx's traps). Variables are stored in the graph as initializers.
    variables: the pytree passed to `apply_fn` (e.g. {"params", "batch_stats"}).
    export_config: config.export (input_height, input_width, input_channel, batch_size, opset_version,
      do_constant_folding).
    out_path: the ONNX file to write.
    output_names: graph output names, in order.
    input_name: graph input name.
    model_name: graph name.
    metadata: written to the model's metadata_props.
    reference_fn: the JAX function the written file is compared with; default `apply_fn`.
    test_input: [B, C, H, W] verification input; default `verification_input(...)`.
    tolerance: largest error accepted on any output.
    compare_fn: the per-output error of the written file against JAX; default the max absolute difference.
    encryption_key: when set, the file is encrypted (see `encryption`).

  Returns:
    ExportResult.

  Raises:
    ExportSettingsError: unsupported settings (before anything is traced).
    ExportVerificationError: an output of the written file differs from JAX by more than `tolerance`.
  """
  check_export_settings(export_config)
  out_path = pathlib.Path(out_path)
  shape = input_shape(export_config)
  forward = nchw_function(apply_fn, output_names)
  start = time.perf_counter()
  with _quiet_exporter():
    model = to_onnx(lambda x: forward(variables, x), [shape], model_name=model_name,
                    opset=export_config.opset_version, input_names=[input_name], output_names=list(output_names))
  model = relabel_shapes(reduce_axes_as_attributes(model))
  if export_config.do_constant_folding:
    model = relabel_shapes(fold_constants(model))
  _check_interface(model, input_name, shape, output_names)
  onnx.helper.set_model_props(model, dict(metadata or {}))
  onnx.checker.check_model(model, full_check=True)
  encryption.write_file(out_path, model.SerializeToString(), encryption_key)
  export_seconds = time.perf_counter() - start

  test_input = verification_input(shape) if test_input is None else test_input
  session = ort.InferenceSession(encryption.read_file(out_path, encryption_key),
                                 providers=["CPUExecutionProvider"])
  onnx_outputs = dict(zip(output_names, session.run(list(output_names), {input_name: test_input})))
  reference = jax.jit(nchw_function(reference_fn or apply_fn, output_names))
  with jax.default_matmul_precision("highest"):  # full float32 convs and matmuls (no TF32 on GPUs), as TAO
    jax_outputs = dict(zip(output_names, jax.tree.map(np.asarray, reference(variables, test_input))))
  errors = compare_fn(onnx_outputs, jax_outputs)
  failed = {name: error for name, error in errors.items() if not error <= tolerance}
  if failed:
    out_path.unlink()
    raise ExportVerificationError(
        f"{out_path} does not reproduce the JAX model (removed): |ONNX - JAX| above {tolerance} on "
        + ", ".join(f"{name} {error:.3g}" for name, error in failed.items())
        + f"; all outputs: {errors}")
  return ExportResult(path=out_path, errors=errors, verification_batch=test_input.shape[0],
                      num_nodes=len(model.graph.node), file_bytes=out_path.stat().st_size,
                      export_seconds=export_seconds, encrypted=bool(encryption_key))
