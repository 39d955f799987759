"""Configuration handling shared by the four entry points: the `--config` flag, whole-config validation,
and the mapping of TAO's `num_gpus` / `gpu_ids` onto JAX devices.

`--config` takes a Python config file (`configs/*.py`, whose `get_config()` returns a ConfigDict) or a TAO
experiment spec (`*.yaml`), and every field can be overridden on the command line
(`--config.train.num_epochs=3`). Before any work starts, `validate(config, task)` checks the whole config and
reports every problem at once, each naming the field, the bad value and what is allowed.
"""

import difflib
import json
import os
import pathlib
import sys
import traceback
from typing import Callable, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags

from centerpose_jax import errors

TASKS = ("train", "evaluate", "infer", "export", "gen_trt_engine")
DOWN_RATIO = 4  # the heads' stride; dataset.output_res = input_res / 4
BACKBONES = ("DLA34", "fan_small", "fan_base", "fan_large")
PRECISIONS = ("fp32", "bf16", "fp16")
SPEC_EXTENSIONS = (".yaml", ".yml")


class ConfigError(errors.CenterPoseError, ValueError):
  """A config with one or more invalid fields; the message lists every problem, one per line."""

  def __init__(self, problems: Sequence[str]):
    self.problems = list(problems)
    super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


class _ConfigOrSpecParser(config_flags.ConfigFileFlagParser):
  """`--config` parser: a `.py` config file as ml_collections does, or a TAO `.yaml` experiment spec."""

  def parse(self, path):
    if isinstance(path, str) and not os.path.isfile(path):
      raise ConfigError([f"--config: {path!r} is not a file (a configs/*.py config or a TAO spec .yaml)"])
    if isinstance(path, str) and path.lower().endswith(SPEC_EXTENSIONS):
      from centerpose_jax.convert import tao_spec  # pylint: disable=g-import-not-at-top
      config = tao_spec.load_tao_spec(path)
      config.lock()
      return config
    return super().parse(path)


def unknown_field_problem(config: config_dict.ConfigDict, path: str) -> Optional[str]:
  """What is wrong with the dotted field `path` of `config` ("train.num_epoch"), or None when it exists.

  Names the section the unknown part was looked up in and its closest field names, e.g.
  "train.num_epoch: unknown field of section train; did you mean train.num_epochs?".
  """
  node, parts = config, path.split(".")
  for depth, part in enumerate(parts):
    section = ".".join(parts[:depth])
    if not isinstance(node, config_dict.ConfigDict):
      return f"{path}: {section} is a value ({format_default(node)}), not a section with fields"
    if part not in node:
      where = f"section {section}" if section else "the config (top level)"
      names = sorted(node.keys())
      close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
      prefix = f"{section}." if section else ""
      hint = (f"did you mean {' or '.join(prefix + name for name in close)}?" if close
              else f"its fields: {', '.join(names)}")
      return f"{path}: unknown field of {where}; {hint}"
    node = node[part]
  return None


class _ConfigFlag(config_flags._ConfigFlag):  # pylint: disable=protected-access
  """ml_collections' config flag, with an unknown override field reported as a ConfigError (section name and
  close matches) instead of an AttributeError traceback.

  Without `--config` on the command line the default file is parsed (with the overrides) when the flag is
  defined, at import time; a problem found then is kept in `deferred_error` and reported by `run`.
  """

  deferred_error: Optional[errors.CenterPoseError] = None

  def _parse(self, argument):
    try:
      return super()._parse(argument)
    except (AttributeError, KeyError) as error:
      config = self.parser.parse(argument)
      problems = [problem for path in self._GetOverrides(self._GetArgv())
                  if (problem := unknown_field_problem(config, path)) is not None]
      if problems:
        raise ConfigError(problems) from error
      raise

  def _set_default(self, default):
    try:
      super()._set_default(default)
    except errors.CenterPoseError as error:
      self.deferred_error = error
      self.default = self.value = None


DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                   "configs", "default.py")


def config_fields(config: config_dict.ConfigDict, prefix: str = "") -> List[str]:
  """Every leaf field of `config` as a dotted path, in definition order."""
  fields = []
  for key, value in config.items():
    path = f"{prefix}{key}"
    if isinstance(value, config_dict.ConfigDict):
      fields.extend(config_fields(value, path + "."))
    else:
      fields.append(path)
  return fields


def define_config_flag(name: str = "config", default: str = DEFAULT_CONFIG_FILE) -> flags.FlagHolder:
  """Defines `--<name>`: a config file (`.py`) or a TAO spec (`.yaml`), with per-field overrides.

  The help text lists every overridable field (generated from configs/default.py, so it cannot drift).
  """
  from configs import default as default_config  # pylint: disable=g-import-not-at-top
  fields = ", ".join(f"--{name}.{f}" for f in config_fields(default_config.get_config()))
  flag = _ConfigFlag(
      parser=_ConfigOrSpecParser(name=name, lock_config=True),
      serializer=flags.ArgumentSerializer(),
      name=name,
      default=default,
      help_string="Config file (configs/*.py) or TAO experiment spec (*.yaml); override any field with "
                  f"--{name}.<section>.<field>=<value>. Fields (see docs/configuration.md): {fields}",
      flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)


def _out_of_memory_hint(config: config_dict.ConfigDict, task: str) -> str:
  """What to lower after an out-of-memory error in `task`."""
  batch = f"dataset.batch_size (now {config.dataset.batch_size} per device)"
  if task == "train":
    return (f"lower {batch} or dataset.input_res (now {config.dataset.input_res}); keep the global batch with "
            f"train.grad_accumulation_steps, or use train.precision=bf16")
  if task == "export":
    return f"lower export.batch_size (now {config.export.batch_size}) or set export.on_cpu=True"
  return f"lower {batch}"


def _is_out_of_memory(error: BaseException) -> bool:
  """An XLA RESOURCE_EXHAUSTED error (device or host allocation failed) or a Python MemoryError."""
  if isinstance(error, MemoryError):
    return True
  return type(error).__name__ in ("JaxRuntimeError", "XlaRuntimeError") and "RESOURCE_EXHAUSTED" in str(error)


def _report(program: str, message: BaseException, cause: BaseException, verbose: bool) -> None:
  """Prints `program: error: message`, after the traceback of `cause` when `verbose`."""
  if verbose:
    traceback.print_exception(cause)
  print(f"{program}: error: {message}", file=sys.stderr)


def run(main: Callable[[config_dict.ConfigDict], None], task: str, config_flag: flags.FlagHolder) -> None:
  """Runs an entry point: parses flags, validates the config for `task`, then calls `main(config)`.

  A problem with the flags or the config (unknown field, bad value, missing file) is printed without a
  traceback and exits with status 2; a `CenterPoseError` raised by the work (bad data, wrong key, diverged
  training, ...) or an out-of-memory error (with what to lower) is printed and exits with status 1. With
  `--verbosity=1` (or higher) the traceback is printed too. The INFO logs of the libraries underneath (Orbax,
  jax) are hidden unless `--verbosity` is given.
  """
  program = os.path.basename(sys.argv[0])

  def verbose() -> bool:
    return flags.FLAGS["verbosity"].present and flags.FLAGS.verbosity >= 1

  def parse_flags(argv):
    try:
      deferred = flags.FLAGS[config_flag.name].deferred_error
      if deferred is not None:
        raise deferred
      return flags.FLAGS(argv)
    except (flags.Error, errors.CenterPoseError) as error:
      cause = error if isinstance(error, errors.CenterPoseError) else error.__context__
      message = cause if isinstance(cause, errors.CenterPoseError) else f"{error} (--helpfull lists every flag)"
      print(f"{program}: {message}", file=sys.stderr)
      sys.exit(2)

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    try:
      config = validate(config_flag.value, task)
    except ConfigError as error:
      print(f"{program}: {error}", file=sys.stderr)
      sys.exit(2)
    try:
      main(config)
    except errors.CenterPoseError as error:
      _report(program, error, error, verbose())
      sys.exit(1)
    except Exception as error:  # pylint: disable=broad-except
      if not _is_out_of_memory(error):
        raise
      first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
      message = errors.OutOfMemoryError(f"out of memory ({first_line}): {_out_of_memory_hint(config, task)}")
      _report(program, message, error, verbose())
      sys.exit(1)

  app.run(_main, flags_parser=parse_flags)


def _positive(problems, config, path, allow_zero=False):
  value = _get(config, path)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
      value >= 0 if allow_zero else value > 0)
  if not ok:
    allowed = "a number >= 0" if allow_zero else "a positive number"
    problems.append(f"{path}: got {value!r}, expected {allowed}")
  return ok


def _one_of(problems, config, path, allowed):
  value = _get(config, path)
  if value not in allowed:
    problems.append(f"{path}: got {value!r}, expected one of {', '.join(map(str, allowed))}")


def _existing_path(problems, config, path, what, required=True):
  value = _get(config, path)
  if not value:
    if required:
      problems.append(f"{path}: {what} is required but not set")
    return
  if not os.path.exists(value):
    problems.append(f"{path}: {value!r} does not exist ({what})")


def _get(config, path):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


# TAO options with no implementation here, with their default: any other value is reported with the reason.
UNSUPPORTED_OPTIONS = {
    "dataset.mse_loss": (False, "the MSE heatmap loss is not implemented; the focal loss (TAO's default) is"),
    "dataset.dense_hp": (False, "dense keypoint regression is not implemented"),
    "dataset.hps_uncertainty": (False, "keypoint uncertainty heads are not implemented (NVlabs only)"),
    "dataset.obj_scale_uncertainty": (False, "scale uncertainty heads are not implemented (NVlabs only)"),
    "dataset.pin_memory": (True, "has no counterpart in JAX (batches are placed with jax.device_put)"),
    "train.cudnn.benchmark": (False, "has no counterpart in JAX (XLA chooses the convolution algorithms)"),
    "train.cudnn.deterministic": (True, "has no counterpart in JAX (XLA chooses the convolution algorithms)"),
    "train.loss_config.mse_loss": (False, "the MSE heatmap loss is not implemented; the focal loss is"),
    "train.loss_config.dense_hp": (False, "dense keypoint regression is not implemented"),
    "train.loss_config.hps_uncertainty": (False, "keypoint uncertainty losses are not implemented"),
    "train.loss_config.obj_scale_uncertainty": (False, "scale uncertainty losses are not implemented"),
    "train.loss_config.use_residual": (False, "residual scale regression is not implemented (TAO ignores it)"),
    "train.loss_config.dimension_ref": ("", "reference dimensions are not implemented (TAO ignores it)"),
    "train.loss_config.num_stacks": (1, "the network has one output stack"),
    "evaluate.num_nodes": (1, "evaluation runs on one host"),
    "inference.num_nodes": (1, "inference runs on one host"),
    "evaluate.trt_engine": (None, "TensorRT engines run in TAO-deploy or Isaac ROS, not here: build one with "
                                  "tools/gen_trt_engine.py; to evaluate the exported model set evaluate.onnx_file"),
    "inference.trt_engine": (None, "TensorRT engines run in TAO-deploy or Isaac ROS, not here: build one with "
                                   "tools/gen_trt_engine.py; to run the exported model set inference.onnx_file"),
}


def input_size(dataset_config) -> Tuple[int, int]:
  """(width, height) in pixels of the network input: `dataset.input_res`, an int (square) or (width, height)."""
  res = dataset_config.input_res
  return (int(res), int(res)) if isinstance(res, int) else (int(res[0]), int(res[1]))


def output_size(dataset_config) -> Tuple[int, int]:
  """(width, height) of the output grid (the head maps): the input size / 4."""
  width, height = input_size(dataset_config)
  return width // DOWN_RATIO, height // DOWN_RATIO


def _input_res_problem(value) -> Optional[str]:
  if isinstance(value, int) and not isinstance(value, bool):
    sides = (value,)
  elif isinstance(value, (tuple, list)) and len(value) == 2:
    sides = tuple(value)
  else:
    return f"dataset.input_res: got {value!r}, expected pixels: an int (square) or (width, height)"
  if any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v % 32 for v in sides):
    return f"dataset.input_res: got {value!r}, expected a positive multiple of 32 (pixels) or two: (width, height)"
  return None


def _check_unsupported(problems, config):
  for path, (default, reason) in UNSUPPORTED_OPTIONS.items():
    value = _get(config, path)
    if value != default:
      problems.append(f"{path}: got {value!r}, only {default!r} is supported: {reason}")


def _check_common(problems, config):
  _one_of(problems, config, "model.backbone.model_type", BACKBONES)
  _one_of(problems, config, "train.precision", PRECISIONS)
  _one_of(problems, config, "inference.pnp_keypoints", ("displacement+heatmap", "displacement"))
  if config.dataset.num_classes != 1:
    problems.append(f"dataset.num_classes: got {config.dataset.num_classes!r}, expected 1 "
                    "(CenterPose is category-level: train one model per category)")
  if config.dataset.num_joints != 8:
    problems.append(f"dataset.num_joints: got {config.dataset.num_joints!r}, expected 8 (cuboid corners)")
  for path in ("dataset.batch_size", "dataset.max_objs", "dataset.num_symmetry", "model.head_conv",
               "model.backbone.width_multiplier", "evaluate.eval_num_symmetry", "inference.num_select",
               "train.optim.lr", "train.optim.lr_decay"):
    _positive(problems, config, path)
  _positive(problems, config, "dataset.workers", allow_zero=True)
  _positive(problems, config, "inference.object_height", allow_zero=True)
  _positive(problems, config, "train.clip_grad_val", allow_zero=True)
  if config.model.backbone.model_type != "DLA34" and config.model.backbone.width_multiplier != 1.0:
    problems.append(f"model.backbone.width_multiplier: got {config.model.backbone.width_multiplier!r}, expected 1.0 "
                    f"for {config.model.backbone.model_type} (it scales DLA34 only)")
  if config.model.down_ratio != DOWN_RATIO:
    problems.append(f"model.down_ratio: got {config.model.down_ratio!r}, expected 4 (the heads are at stride 4)")
  res_problem = _input_res_problem(config.dataset.input_res)
  if res_problem:
    problems.append(res_problem)
  else:
    expected = output_size(config.dataset)
    output_res = config.dataset.output_res
    given = (output_res, output_res) if isinstance(output_res, int) else tuple(output_res or ())
    if given != expected:
      shown = expected[0] if isinstance(config.dataset.input_res, int) else expected
      problems.append(f"dataset.output_res: got {output_res!r}, expected input_res / 4 = {shown!r}")
  _check_unsupported(problems, config)
  for path in ("dataset.flip", "inference.visualization_threshold"):
    value = _get(config, path)
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
      problems.append(f"{path}: got {value!r}, expected a number in [0, 1]")
  _check_devices(problems, config.train, "train")


def _check_train(problems, config):
  train = config.train
  epochs_ok = _positive(problems, config, "train.num_epochs")
  for name in ("checkpoint_interval", "validation_interval"):
    if _positive(problems, config, f"train.{name}") and epochs_ok and train[name] > train.num_epochs:
      problems.append(f"train.{name}: got {train[name]!r}, expected at most train.num_epochs ({train.num_epochs})")
  _positive(problems, config, "train.grad_accumulation_steps")
  _positive(problems, config, "train.max_checkpoints_to_keep", allow_zero=True)
  if _positive(problems, config, "train.divergence_factor") and train.divergence_factor <= 1:
    problems.append(f"train.divergence_factor: got {train.divergence_factor!r}, expected a number above 1")
  if not isinstance(train.divergence_steps, int) or train.divergence_steps <= 0:
    problems.append(f"train.divergence_steps: got {train.divergence_steps!r}, expected a positive whole number")
  steps = list(train.optim.lr_steps)
  if any(not isinstance(s, int) or s <= 0 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
    problems.append(f"train.optim.lr_steps: got {steps!r}, expected strictly increasing positive epochs")
  if train.optim.lr_scheduler != "MultiStep":
    problems.append(f"train.optim.lr_scheduler: got {train.optim.lr_scheduler!r}, expected MultiStep")
  if train.loss_config.reg_loss != "l1":
    problems.append(f"train.loss_config.reg_loss: got {train.loss_config.reg_loss!r}, expected l1")
  _existing_path(problems, config, "dataset.train_data", "training data folder or packed dataset")
  _existing_path(problems, config, "dataset.val_data", "validation data", required=False)
  _existing_path(problems, config, "train.resume_training_checkpoint_path", "checkpoint to resume from",
                 required=False)
  _existing_path(problems, config, "train.pretrained_model_path", "weights to initialise from", required=False)
  if config.model.use_pretrained and not config.train.pretrained_model_path:
    _check_pretrained_backbone(problems, config)


def _check_pretrained_backbone(problems, config):
  """`model.use_pretrained`: a backbone weights path that exists; without one, DLA34 at full width downloads
  TAO's public file, FAN has none to download. Only training reads it."""
  model = config.model
  if model.backbone.pretrained_backbone_path:
    _existing_path(problems, config, "model.backbone.pretrained_backbone_path", "ImageNet backbone weights")
  elif model.backbone.model_type != "DLA34":
    problems.append(
        f"model.backbone.pretrained_backbone_path: model.use_pretrained=True with {model.backbone.model_type} needs "
        "the FAN ImageNet weights file (NGC model pretrained_fan_classification_nvimagenet, e.g. "
        "fan_small_hybrid_nvimagenet.pth), which cannot be downloaded automatically: set the path, or "
        "model.use_pretrained=False")
  elif model.backbone.get("width_multiplier", 1.0) != 1.0:
    problems.append(f"model.use_pretrained: the ImageNet DLA34 weights fit model.backbone.width_multiplier=1.0 "
                    f"only, got {model.backbone.width_multiplier!r}")


def _check_model_source(problems, config, section):
  """evaluate/inference read weights from `checkpoint` or an exported `onnx_file`."""
  if config[section].onnx_file:
    _existing_path(problems, config, f"{section}.onnx_file", "exported ONNX model")
  else:
    _existing_path(problems, config, f"{section}.checkpoint", f"checkpoint to {section} (or {section}.onnx_file)")


def _check_evaluate(problems, config):
  if not config.dataset.test_data and not config.dataset.val_data:
    problems.append("dataset.test_data: evaluation needs dataset.test_data (or dataset.val_data) but neither is set")
  else:
    key = "dataset.test_data" if config.dataset.test_data else "dataset.val_data"
    _existing_path(problems, config, key, "evaluation data")
  _check_model_source(problems, config, "evaluate")


def _check_infer(problems, config):
  _existing_path(problems, config, "dataset.inference_data", "image folder, image or video to run on")
  _check_model_source(problems, config, "inference")
  for name in ("min_hits", "outlier_frames", "keypoint_noise", "scale_noise", "translation_acceleration", "rotation_acceleration",
               "scale_acceleration"):
    _positive(problems, config, f"inference.tracking.{name}")
  for name in ("max_age", "pose_weight", "outlier_gate"):
    _positive(problems, config, f"inference.tracking.{name}", allow_zero=True)
  min_iou = config.inference.tracking.min_iou
  if not isinstance(min_iou, (int, float)) or not 0.0 <= min_iou < 1.0:
    problems.append(f"inference.tracking.min_iou: got {min_iou!r}, expected a number in [0, 1)")


def _check_export(problems, config):
  export = config.export
  _existing_path(problems, config, "export.checkpoint", "checkpoint to export")
  for name in ("input_height", "input_width"):
    value = export[name]
    if not isinstance(value, int) or value <= 0 or value % 32:
      problems.append(f"export.{name}: got {value!r}, expected a positive multiple of 32 (pixels)")
  if export.input_channel != 3:
    problems.append(f"export.input_channel: got {export.input_channel!r}, expected 3 (BGR images)")
  if export.batch_size == 0 or export.batch_size < -1:
    problems.append(f"export.batch_size: got {export.batch_size!r}, expected -1 (dynamic) or a positive number")
  if export.num_select <= 0:
    problems.append(f"export.num_select: got {export.num_select!r}, expected a positive number")


def _check_gen_trt_engine(problems, config):
  engine = config.gen_trt_engine
  trt = engine.tensorrt
  _one_of(problems, config, "gen_trt_engine.tensorrt.data_type", ("FP32", "FP16", "INT8"))
  _positive(problems, config, "gen_trt_engine.tensorrt.workspace_size")
  sizes_ok = all(_positive(problems, config, f"gen_trt_engine.tensorrt.{name}_batch_size")
                 for name in ("min", "opt", "max"))
  if sizes_ok and not trt.min_batch_size <= trt.opt_batch_size <= trt.max_batch_size:
    problems.append(f"gen_trt_engine.tensorrt: expected min_batch_size <= opt_batch_size <= max_batch_size, got "
                    f"{trt.min_batch_size}, {trt.opt_batch_size}, {trt.max_batch_size}")
  if engine.batch_size == 0 or engine.batch_size < -1:
    problems.append(f"gen_trt_engine.batch_size: got {engine.batch_size!r}, expected -1 (the profile's min/opt/max) "
                    "or a positive number")
  if trt.data_type == "INT8":
    _existing_path(problems, config, "gen_trt_engine.tensorrt.calibration.cal_cache_file",
                   "INT8 calibration cache (trtexec cannot calibrate from cal_image_dir; make the cache with "
                   "TAO-deploy)")


def _check_devices(problems, section, name):
  """TAO's num_gpus/gpu_ids checks (the device count itself is checked by `select_devices`)."""
  if section.num_gpus == 0 or section.num_gpus < -1:
    problems.append(f"{name}.num_gpus: got {section.num_gpus!r}, expected a positive number (or -1 for all)")
  if any(not isinstance(i, int) or i < 0 for i in section.gpu_ids):
    problems.append(f"{name}.gpu_ids: got {list(section.gpu_ids)!r}, expected device indices >= 0")
  if section.num_nodes <= 0:
    problems.append(f"{name}.num_nodes: got {section.num_nodes!r}, expected a positive number")


_TASK_CHECKS = {"train": _check_train, "evaluate": _check_evaluate, "infer": _check_infer,
                "export": _check_export, "gen_trt_engine": _check_gen_trt_engine}


def collect_problems(config: config_dict.ConfigDict, task: str) -> List[str]:
  """Every problem of `config` for `task` (one of TASKS), as 'field: got VALUE, expected ALLOWED' lines."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  problems = _type_problems(config)
  if problems:  # the rules below compare values, which needs the right types
    return problems
  _check_common(problems, config)
  _TASK_CHECKS[task](problems, config)
  return problems


_TYPE_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "a string",
               tuple: "a list"}
# Pixel sizes given as an int (square) or a (width, height) pair; their own rules check them.
_SIZE_FIELDS = frozenset({"dataset.input_res", "dataset.output_res"})


def _type_problems(config: config_dict.ConfigDict) -> List[str]:
  """'field: got VALUE, expected TYPE' for every field whose value has another type than its default in
  configs/default.py (an int is a number; None only where the default is None)."""
  from configs import default as default_config  # pylint: disable=g-import-not-at-top
  defaults = default_config.get_config()
  problems = []
  for path in config_fields(defaults):
    if path in _SIZE_FIELDS:
      continue
    try:
      value, default = _get(config, path), _get(defaults, path)
    except (KeyError, AttributeError):
      continue  # a config file may leave out a section it does not use
    expected = type(default) if default is not None else str
    if value is None and default is None:
      continue
    ok = isinstance(value, (list, tuple)) if expected is tuple else (
        isinstance(value, expected) and (expected is bool or not isinstance(value, bool))
        or (expected is float and isinstance(value, int) and not isinstance(value, bool)))
    if not ok:
      problems.append(f"{path}: got {value!r}, expected {_TYPE_NAMES.get(expected, expected.__name__)}")
  return problems


def validate(config: config_dict.ConfigDict, task: str) -> config_dict.ConfigDict:
  """Returns `config` if it is valid for `task`, else raises ConfigError listing every problem."""
  problems = collect_problems(config, task)
  if problems:
    raise ConfigError(problems)
  return config


def task_results_dir(config, section: str) -> pathlib.Path:
  """Where a task writes: `<section>.results_dir` when set, else `results_dir/<section>` (section "train",
  "evaluate" or "inference")."""
  return pathlib.Path(config[section].results_dir or os.path.join(config.results_dir, section))


def export_onnx_file(config) -> pathlib.Path:
  """Where export.py writes the ONNX: `export.onnx_file`, else `<export results dir>/<model_name>.onnx` (the
  export results dir: `export.results_dir`, else `results_dir/export`)."""
  if config.export.onnx_file:
    return pathlib.Path(config.export.onnx_file)
  return task_results_dir(config, "export") / f"{config.model_name}.onnx"


def resolve_device_ids(num_gpus: int, gpu_ids: Sequence[int], available: int,
                       section: str = "train") -> List[int]:
  """Local device indices to use, with TAO's rule for inconsistent `num_gpus` / `gpu_ids`.

  TAO follows whichever of the two asks for more devices: `num_gpus=2, gpu_ids=[0]` uses devices [0, 1]
  and `num_gpus=1, gpu_ids=[0, 1]` uses [0, 1]. `num_gpus=-1` (ours) uses every local device.
  Raises ConfigError when more devices are asked for than exist.
  """
  if num_gpus == -1:
    return list(range(available))
  ids = list(gpu_ids)
  if num_gpus > len(ids):
    ids = list(range(num_gpus))
  if len(ids) > available or max(ids) >= available:
    raise ConfigError([f"{section}.num_gpus / {section}.gpu_ids: asked for devices {ids} but only {available} "
                       f"local device(s) exist (indices 0..{available - 1})"])
  return ids


def select_devices(section: config_dict.ConfigDict, name: str = "train"):
  """The local JAX devices for a task section with `num_gpus` and `gpu_ids` (train, evaluate, inference)."""
  import jax  # pylint: disable=g-import-not-at-top
  local = jax.local_devices()
  return [local[i] for i in resolve_device_ids(section.num_gpus, section.gpu_ids, len(local), name)]


def format_default(value) -> str:
  """A config value as docs/configuration.md writes it (strings quoted, lists in JSON, None as None)."""
  if value is None:
    return "None"
  if isinstance(value, str):
    return f'"{value}"'
  if isinstance(value, (list, tuple)):
    return json.dumps(list(value)).replace('"', "'")
  return repr(value)
