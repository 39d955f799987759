"""TAO-deploy's `gen_trt_engine` as a `trtexec` command line (tools/gen_trt_engine.py).

TAO builds CenterPose's TensorRT engine with its own builder (tao-deploy); the same engine comes from NVIDIA's
`trtexec`, which ships with TensorRT. `trtexec_command(config)` maps the `gen_trt_engine` section onto its
flags:

  onnx_file (default: export.py's output)         --onnx=FILE
  trt_engine (default: <results>/<model>.engine)  --saveEngine=FILE
  tensorrt.data_type FP16 / INT8                  --fp16 / --int8 --calib=tensorrt.calibration.cal_cache_file
  tensorrt.workspace_size (MiB)                   --memPoolSize=workspace:SIZE
  tensorrt.min/opt/max_batch_size, batch_size     --minShapes/--optShapes/--maxShapes=input:Bx3xHxW
                                                  (for an ONNX with a dynamic batch axis; batch_size > 0 fixes
                                                  all three)
  timing_cache                                    --timingCacheFile=FILE
  gpu_id                                          --device=ID
  verbose                                         --verbose

trtexec cannot run a calibrator on images: INT8 needs an existing calibration cache (`cal_cache_file`, e.g.
from TAO-deploy); `cal_image_dir`, `cal_batch_size` and `cal_batches` are TAO-deploy's calibrator settings.
"""

import pathlib
import shutil
import subprocess
from typing import List

import onnx

from centerpose_jax import config as config_lib
from centerpose_jax import errors
from centerpose_jax.inference.onnx_predictor import INPUT_NAME

TRTEXEC = "trtexec"


class EngineError(errors.CenterPoseError, ValueError):
  """gen_trt_engine settings that do not fit the ONNX file, or a failed trtexec run."""


def onnx_file(config) -> pathlib.Path:
  """The ONNX to build from: `gen_trt_engine.onnx_file`, else export.py's output (`config.export_onnx_file`)."""
  engine = config.gen_trt_engine
  return pathlib.Path(engine.onnx_file) if engine.onnx_file else config_lib.export_onnx_file(config)


def engine_file(config) -> pathlib.Path:
  """The engine to write: `gen_trt_engine.trt_engine`, else `<gen_trt_engine results dir>/<model_name>.engine`."""
  engine = config.gen_trt_engine
  if engine.trt_engine:
    return pathlib.Path(engine.trt_engine)
  return config_lib.task_results_dir(config, "gen_trt_engine") / f"{config.model_name}.engine"


def _onnx_input_shape(path: pathlib.Path):
  """(batch or None when dynamic, channels, height, width) of the ONNX's `input`, reading only the graph."""
  model = onnx.load(str(path), load_external_data=False)
  inputs = {value.name: value for value in model.graph.input}
  if INPUT_NAME not in inputs:
    raise EngineError(f"{path}: no input named {INPUT_NAME!r} (inputs: {sorted(inputs)}); export it with "
                              "export.py")
  dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[INPUT_NAME].type.tensor_type.shape.dim]
  if len(dims) != 4 or None in dims[1:]:
    raise EngineError(f"{path}: input {INPUT_NAME!r} has shape {dims}, expected [batch, 3, H, W]")
  return tuple(dims)


def trtexec_command(config) -> List[str]:
  """The `trtexec` argument list that builds the engine described by `config.gen_trt_engine` (see the module
  docstring). Reads the ONNX's input shape (the file must exist).

  Raises:
    EngineError: the ONNX is missing or its input differs from `gen_trt_engine.input_*`, or the
      batch sizes or precision settings do not fit.
  """
  engine = config.gen_trt_engine
  trt = engine.tensorrt
  source = onnx_file(config)
  if not source.is_file():
    raise EngineError(f"gen_trt_engine.onnx_file: {source} does not exist; run export.py first (or set "
                              "gen_trt_engine.onnx_file)")
  batch, channels, height, width = _onnx_input_shape(source)
  expected = {"input_channel": channels, "input_height": height, "input_width": width}
  wrong = [f"gen_trt_engine.{name}={engine[name]} but the ONNX takes {value}" for name, value in expected.items()
           if engine[name] != value]
  if wrong:
    raise EngineError(f"{source}: " + "; ".join(wrong) + " (set them to the exported size)")
  command = [TRTEXEC, f"--onnx={source}", f"--saveEngine={engine_file(config)}", f"--device={engine.gpu_id}",
             f"--memPoolSize=workspace:{int(trt.workspace_size)}"]
  if batch is None:
    sizes = [engine.batch_size] * 3 if engine.batch_size > 0 else [
        trt.min_batch_size, trt.opt_batch_size, trt.max_batch_size]
    for flag, size in zip(("--minShapes", "--optShapes", "--maxShapes"), sizes):
      command.append(f"{flag}={INPUT_NAME}:{size}x{channels}x{height}x{width}")
  elif engine.batch_size > 0 and engine.batch_size != batch:
    raise EngineError(f"gen_trt_engine.batch_size={engine.batch_size} but {source} has a static batch of "
                              f"{batch}; use -1 or export with export.batch_size={engine.batch_size}")
  if trt.data_type == "FP16":
    command.append("--fp16")
  elif trt.data_type == "INT8":
    command += ["--int8", f"--calib={trt.calibration.cal_cache_file}"]
  if engine.timing_cache:
    command.append(f"--timingCacheFile={engine.timing_cache}")
  if engine.verbose:
    command.append("--verbose")
  return command


def build_engine(config) -> dict:
  """Runs `trtexec_command(config)` when `trtexec` is on PATH, else prints it. Returns {"command": [...],
  "ran": bool, "engine": path}.

  Raises:
    EngineError: see `trtexec_command`; or trtexec failed (its exit status and the command).
  """
  command = trtexec_command(config)
  engine = engine_file(config)
  executable = shutil.which(TRTEXEC)
  printable = " ".join(command)
  if executable is None:
    print(f"gen_trt_engine: {TRTEXEC} is not on PATH (it comes with TensorRT); run this where it is:\n{printable}")
    return {"command": command, "ran": False, "engine": str(engine)}
  engine.parent.mkdir(parents=True, exist_ok=True)
  print(f"gen_trt_engine: {printable}")
  completed = subprocess.run([executable] + command[1:], check=False)
  if completed.returncode != 0:
    raise EngineError(f"{TRTEXEC} failed with exit status {completed.returncode}: {printable}")
  print(f"gen_trt_engine: wrote {engine}")
  return {"command": command, "ran": True, "engine": str(engine)}
