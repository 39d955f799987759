"""Configuration handling shared by the four entry points: the `--config` flag, whole-config validation,
and the mapping of TAO's `num_gpus` / `gpu_ids` onto JAX devices.

`--config` takes a Python config file (`configs/*.py`, whose `get_config()` returns a ConfigDict) or a TAO
experiment spec (`*.yaml`), and every field can be overridden on the command line
(`--config.train.num_epochs=3`). Before any work starts, `validate(config, task)` checks the whole config and
reports every problem at once, each naming the field, the bad value and what is allowed.
"""

import json
import os
import pathlib
import sys
from typing import Callable, List, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_dict
from ml_collections.config_flags import config_flags

from centerpose_jax import errors

TASKS = ("train", "evaluate", "infer", "export")
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
    if isinstance(path, str) and path.lower().endswith(SPEC_EXTENSIONS):
      from centerpose_jax.convert import tao_spec  # pylint: disable=g-import-not-at-top
      config = tao_spec.load_tao_spec(path)
      config.lock()
      return config
    return super().parse(path)


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
  # pylint: disable=protected-access
  flag = config_flags._ConfigFlag(
      parser=_ConfigOrSpecParser(name=name, lock_config=True),
      serializer=flags.ArgumentSerializer(),
      name=name,
      default=default,
      help_string="Config file (configs/*.py) or TAO experiment spec (*.yaml); override any field with "
                  f"--{name}.<section>.<field>=<value>. Fields (see docs/configuration.md): {fields}",
      flag_values=flags.FLAGS,
  )
  return flags.DEFINE_flag(flag, flags.FLAGS)


def run(main: Callable[[config_dict.ConfigDict], None], task: str, config_flag: flags.FlagHolder) -> None:
  """Runs an entry point: parses flags, validates the config for `task`, then calls `main(config)`.

  A config problem is printed as a list (no traceback) and exits with status 2; a `CenterPoseError` raised
  by the work (bad data, wrong key, diverged training, ...) is printed and exits with status 1. The INFO logs
  of the libraries underneath (Orbax, jax) are hidden unless `--verbosity` is given.
  """

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
      absl_logging.set_verbosity(absl_logging.WARNING)
    program = os.path.basename(sys.argv[0])
    try:
      config = validate(config_flag.value, task)
    except ConfigError as error:
      print(f"{program}: {error}", file=sys.stderr)
      sys.exit(2)
    try:
      main(config)
    except errors.CenterPoseError as error:
      print(f"{program}: error: {error}", file=sys.stderr)
      sys.exit(1)

  app.run(_main)


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
  _positive(problems, config, "train.clip_grad_val", allow_zero=True)
  if config.model.down_ratio != 4:
    problems.append(f"model.down_ratio: got {config.model.down_ratio!r}, expected 4 (the heads are at stride 4)")
  res = config.dataset.input_res
  if not isinstance(res, int) or res <= 0 or res % 32:
    problems.append(f"dataset.input_res: got {res!r}, expected a positive multiple of 32 (pixels)")
  elif config.dataset.output_res != res // 4:
    problems.append(f"dataset.output_res: got {config.dataset.output_res!r}, expected input_res / 4 = {res // 4}")
  for path in ("dataset.flip", "inference.visualization_threshold"):
    value = _get(config, path)
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
      problems.append(f"{path}: got {value!r}, expected a number in [0, 1]")
  if config.model.use_pretrained and config.model.backbone.pretrained_backbone_path:
    _existing_path(problems, config, "model.backbone.pretrained_backbone_path", "ImageNet backbone weights")
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


def _check_export(problems, config):
  export = config.export
  _existing_path(problems, config, "export.checkpoint", "checkpoint to export")
  if not export.onnx_file:
    problems.append("export.onnx_file: the output path is required but not set")
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


def _check_devices(problems, section, name):
  """TAO's num_gpus/gpu_ids checks (the device count itself is checked by `select_devices`)."""
  if section.num_gpus == 0 or section.num_gpus < -1:
    problems.append(f"{name}.num_gpus: got {section.num_gpus!r}, expected a positive number (or -1 for all)")
  if any(not isinstance(i, int) or i < 0 for i in section.gpu_ids):
    problems.append(f"{name}.gpu_ids: got {list(section.gpu_ids)!r}, expected device indices >= 0")
  if section.num_nodes <= 0:
    problems.append(f"{name}.num_nodes: got {section.num_nodes!r}, expected a positive number")


_TASK_CHECKS = {"train": _check_train, "evaluate": _check_evaluate, "infer": _check_infer,
                "export": _check_export}


def collect_problems(config: config_dict.ConfigDict, task: str) -> List[str]:
  """Every problem of `config` for `task` (one of TASKS), as 'field: got VALUE, expected ALLOWED' lines."""
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
  problems: List[str] = []
  _check_common(problems, config)
  _TASK_CHECKS[task](problems, config)
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
