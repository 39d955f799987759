"""Checking a whole config before any work starts: `validate(config, task)` reports every problem at once, each
naming the field, the bad value and what is allowed.

The backbones come from the model registry (`models.registry.BACKBONES`), the types from the defaults
(`config.get_config()`); options TAO has but this project does not implement are accepted at their default only
(`UNSUPPORTED_OPTIONS`, with the reason).
"""

import os
from typing import List, Optional

from ml_collections import config_dict

from centerpose_jax import config as config_lib
from centerpose_jax.config import ConfigError
from centerpose_jax.config import get_field
from centerpose_jax.models import registry


def _positive(problems, config, path, allow_zero=False):
  value = get_field(config, path)
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
      value >= 0 if allow_zero else value > 0)
  if not ok:
    allowed = "a number >= 0" if allow_zero else "a positive number"
    problems.append(f"{path}: got {value!r}, expected {allowed}")
  return ok


def _one_of(problems, config, path, allowed):
  value = get_field(config, path)
  if value not in allowed:
    problems.append(f"{path}: got {value!r}, expected one of {', '.join(map(str, allowed))}")


def _existing_path(problems, config, path, what, required=True):
  value = get_field(config, path)
  if not value:
    if required:
      problems.append(f"{path}: {what} is required but not set")
    return
  if not os.path.exists(value):
    problems.append(f"{path}: {value!r} does not exist ({what})")


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
    value = get_field(config, path)
    if value != default:
      problems.append(f"{path}: got {value!r}, only {default!r} is supported: {reason}")


def _check_common(problems, config):
  _one_of(problems, config, "model.backbone.model_type", tuple(registry.BACKBONES))
  _one_of(problems, config, "train.precision", config_lib.PRECISIONS)
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
  backbone = registry.BACKBONES.get(config.model.backbone.model_type)
  if backbone is not None and not backbone.width_scalable and config.model.backbone.width_multiplier != 1.0:
    scalable = " and ".join(name for name, b in registry.BACKBONES.items() if b.width_scalable)
    problems.append(f"model.backbone.width_multiplier: got {config.model.backbone.width_multiplier!r}, expected 1.0 "
                    f"for {backbone.name} (it scales {scalable} only)")
  if config.model.down_ratio != config_lib.DOWN_RATIO:
    problems.append(f"model.down_ratio: got {config.model.down_ratio!r}, expected 4 (the heads are at stride 4)")
  res_problem = _input_res_problem(config.dataset.input_res)
  if res_problem:
    problems.append(res_problem)
  else:
    expected = config_lib.output_size(config.dataset)
    output_res = config.dataset.output_res
    given = (output_res, output_res) if isinstance(output_res, int) else tuple(output_res or ())
    if given != expected:
      shown = expected[0] if isinstance(config.dataset.input_res, int) else expected
      problems.append(f"dataset.output_res: got {output_res!r}, expected input_res / 4 = {shown!r}")
  _check_unsupported(problems, config)
  for path in ("dataset.flip", "inference.visualization_threshold"):
    value = get_field(config, path)
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
  if not isinstance(train.get("activation_checkpointing", False), bool):
    problems.append(f"train.activation_checkpointing: got {train.activation_checkpointing!r}, expected True or False")
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
  backbone = registry.BACKBONES.get(config.model.backbone.model_type)
  if config.model.use_pretrained and not config.train.pretrained_model_path and backbone is not None:
    _check_pretrained_backbone(problems, config, backbone)


def _check_pretrained_backbone(problems, config, backbone: registry.Backbone):
  """`model.use_pretrained`: a backbone weights path that exists; without one, DLA34 at full width downloads
  TAO's public file, FAN has none to download (`registry.Backbone.downloadable`). Only training reads it."""
  model = config.model
  if model.backbone.pretrained_backbone_path:
    _existing_path(problems, config, "model.backbone.pretrained_backbone_path", "ImageNet backbone weights")
  elif not backbone.imagenet_weights:
    problems.append(f"model.use_pretrained: {backbone.name} has no ImageNet weights; set model.use_pretrained=False")
  elif not backbone.downloadable:
    problems.append(
        f"model.backbone.pretrained_backbone_path: model.use_pretrained=True with {backbone.name} needs the "
        f"{backbone.family.upper()} ImageNet weights file ({backbone.imagenet_weights}), which cannot be downloaded "
        "automatically: set the path, or model.use_pretrained=False")
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
  _check_devices(problems, config.evaluate, "evaluate")


def _check_infer(problems, config):
  _existing_path(problems, config, "dataset.inference_data", "image folder, image or video to run on")
  _check_model_source(problems, config, "inference")
  _check_devices(problems, config.inference, "inference")
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
  """TAO's num_gpus/gpu_ids checks (the device count itself is checked by `mesh.task_devices`)."""
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
  if task not in config_lib.TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {config_lib.TASKS}")
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
  the defaults (`config.get_config()`; an int is a number; None only where the default is None)."""
  defaults = config_lib.get_config()
  problems = []
  for path in config_lib.config_fields(defaults):
    if path in _SIZE_FIELDS:
      continue
    try:
      value, default = get_field(config, path), get_field(defaults, path)
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


