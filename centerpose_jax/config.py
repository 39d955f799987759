"""The configuration schema: every option under TAO's names with TAO's defaults, and the values derived from it.

`get_config()` is the full default configuration and `get_category_config(category)` the defaults of one object
category (`categories.py`). Sections mirror TAO's CenterPose experiment spec: top level, `dataset`, `model`,
`train`, `evaluate`, `inference`, `export`, `gen_trt_engine`. Options marked "ours" do not exist in TAO;
everything else keeps TAO's name and default (differences: docs/differences-from-tao.md; every option:
docs/configuration.md, checked against this file by tests/test_config.py). `configs/default.py` and the
per-category files under `configs/` are thin wrappers of these functions.

Checking a config is `config_validation.py`'s job, and the command line (`--config`) `cli.py`'s.

Usage:
  python train.py --config=configs/default.py --config.dataset.train_data=/data/bike/train ...
"""

import difflib
import json
import os
import pathlib
from typing import List, Optional, Sequence, Tuple

from ml_collections import config_dict

from centerpose_jax import categories
from centerpose_jax import errors
from centerpose_jax import geometry

TASKS = ("train", "evaluate", "infer", "export", "gen_trt_engine")
DOWN_RATIO = 4  # the heads' stride; dataset.output_res = input_res / 4
PRECISIONS = ("fp32", "bf16", "fp16")

# CenterNet COCO statistics, BGR order (the network sees cv2's BGR images).
BGR_MEAN = (0.40789654, 0.44719302, 0.47026115)
BGR_STD = (0.28863828, 0.27408164, 0.27809835)
# PCA lighting noise (TAO's `_eig_val` / `_eig_vec`).
EIG_VAL = (0.2141788, 0.01817699, 0.00341571)
EIG_VEC = ((-0.58752847, -0.69563484, 0.41340352),
           (-0.5832747, 0.00994535, -0.81221408),
           (-0.56089297, 0.71832671, 0.41158938))


def _dataset() -> config_dict.ConfigDict:
  d = config_dict.ConfigDict()
  d.train_data = ""  # folder (leaf folders of image+JSON pairs are discovered) or a packed dataset
  d.val_data = ""
  d.test_data = ""
  d.inference_data = ""  # folder, image file or video file
  d.batch_size = 4  # per device
  d.workers = 8  # loader worker processes (0 = in the main process)
  d.pin_memory = True  # accepted for TAO specs; no effect in JAX
  d.num_classes = 1
  d.num_joints = 8
  d.max_objs = 10
  d.mean = tuple(BGR_MEAN)
  d.std = tuple(BGR_STD)
  d.eig_val = tuple(EIG_VAL)  # TAO: _eig_val
  d.eig_vec = tuple(tuple(row) for row in EIG_VEC)  # TAO: _eig_vec
  d.category = "cereal_box"  # categories.py: the nine Objectron classes, or a custom name
  d.num_symmetry = 1  # symmetric target copies; configs/chair.py sets 4 and configs/bottle.py 12 (TAO's values)
  d.mse_loss = False
  d.center_3D = False
  d.obj_scale = True
  d.use_absolute_scale = False
  d.obj_scale_uncertainty = False
  d.dense_hp = False
  d.hps_uncertainty = False
  d.reg_bbox = True
  d.reg_offset = True
  d.hm_hp = True
  d.reg_hp_offset = True
  d.flip_idx = geometry.FLIP_IDX
  d.no_color_aug = False
  d.not_rand_crop = False
  d.aug_rot = 0.0
  d.rotate = 0.0  # ours (NVlabs' name): the bound in degrees of the aug_rot rotation
  d.flip = 0.5
  # pixels: an int (square) or (width, height), multiples of 32; TAO's is an int
  d.input_res = config_dict.FieldReference(512, field_type=object)
  d.output_res = config_dict.FieldReference(128, field_type=object)  # input_res / down_ratio, same form
  d.skip_invalid = False  # ours: skip invalid samples with one warning instead of stopping
  return d


def _model() -> config_dict.ConfigDict:
  m = config_dict.ConfigDict()
  m.down_ratio = 4
  m.final_kernel = 1
  m.last_level = 5
  m.head_conv = 256
  m.out_channel = 0
  m.use_convGRU = True
  m.use_pretrained = False
  m.backbone = config_dict.ConfigDict()
  m.backbone.model_type = "DLA34"  # models.registry.BACKBONES: DLA34 | fan_small | fan_base | fan_large (TAO's: fan_small)
  m.backbone.pretrained_backbone_path = ""
  m.backbone.width_multiplier = 1.0  # ours: scales DLA34 channels for slim models (1.0 = TAO's DLA34)
  return m


def _train() -> config_dict.ConfigDict:
  t = config_dict.ConfigDict()
  t.num_gpus = 1
  t.gpu_ids = (0,)
  t.num_nodes = 1
  t.seed = 1234
  t.cudnn = config_dict.ConfigDict({"benchmark": False, "deterministic": True})
  t.num_epochs = 10
  t.checkpoint_interval = 1  # epochs
  t.validation_interval = 1  # epochs
  t.resume_training_checkpoint_path = config_dict.placeholder(str)
  t.results_dir = config_dict.placeholder(str)
  t.pretrained_model_path = ""
  t.clip_grad_val = 100.0  # global gradient norm; 0 disables
  t.is_dry_run = False
  t.precision = "fp32"  # fp32 | bf16 | fp16
  t.grad_accumulation_steps = 1  # ours: optimizer step every N batches
  t.activation_checkpointing = False  # ours: recompute backbone blocks in the backward pass (less memory)
  t.max_checkpoints_to_keep = 0  # ours: 0 keeps all, as TAO
  t.divergence_factor = 10.0  # ours: the loss diverges above this x its running minimum ...
  t.divergence_steps = 20  # ours: ... for this many steps in a row (the minimum is of a mean over as many)
  t.stop_on_divergence = False  # ours: stop a diverging run (else warn and go on)
  t.optim = config_dict.ConfigDict()
  t.optim.lr = 6e-5
  t.optim.lr_scheduler = "MultiStep"
  t.optim.lr_steps = (90, 120)  # epochs
  t.optim.lr_decay = 0.1
  loss = config_dict.ConfigDict()
  loss.mse_loss = False
  loss.dense_hp = False
  loss.reg_loss = "l1"
  loss.num_stacks = 1
  loss.hps_uncertainty = False
  loss.wh_weight = 0.1
  loss.reg_bbox = True
  loss.reg_offset = True
  loss.reg_hp_offset = True
  loss.obj_scale = True
  loss.obj_scale_weight = 1.0
  loss.obj_scale_uncertainty = False
  loss.use_residual = False
  loss.dimension_ref = ""
  loss.off_weight = 1.0
  loss.hm_hp = True
  loss.hm_hp_weight = 1.0
  loss.hm_weight = 1.0
  loss.hp_weight = 1.0
  t.loss_config = loss
  return t


def _run_section() -> config_dict.ConfigDict:
  """The fields evaluate and inference share, in TAO's order: devices, the weights and where results go."""
  section = config_dict.ConfigDict()
  section.num_gpus = 1
  section.gpu_ids = (0,)
  section.num_nodes = 1
  section.checkpoint = ""
  section.trt_engine = config_dict.placeholder(str)
  section.results_dir = config_dict.placeholder(str)
  return section


def _evaluate() -> config_dict.ConfigDict:
  e = _run_section()
  e.opencv = False  # TAO schema: True, which compares OpenCV-frame poses with OpenGL ground truth (see docs)
  e.eval_num_symmetry = 1
  e.tao_compatible = False  # ours: reproduce TAO's matching quirks exactly
  e.onnx_file = ""  # ours: evaluate an exported ONNX with onnxruntime instead of the JAX model
  return e


def _inference() -> config_dict.ConfigDict:
  i = _run_section()
  i.visualization_threshold = 0.3
  i.num_select = 100
  i.use_pnp = True
  i.save_json = True
  i.save_visualization = True
  i.opencv = True
  # Pixels; TAO's example camera (experiment_specs/infer.yaml, an Objectron 600x800 portrait frame). A JSON with
  # camera_data beside an image wins.
  i.principle_point_x = 300.77100118001306
  i.principle_point_y = 392.8848775227865
  i.focal_length_x = 615.0476582845052
  i.focal_length_y = 615.0476582845052
  i.skew = 0.0
  i.axis_size = 0.5  # length of the drawn axes, in relative-scale units
  i.object_height = 0.0  # ours: the object's real height in metres; > 0 makes location / keypoints_3d metric
  i.pnp_keypoints = "displacement"  # ours: PnP points; "displacement+heatmap" = 16 points as NVlabs
  i.onnx_file = ""  # ours: run an exported ONNX with onnxruntime instead of the JAX model
  i.tracking = _tracking()
  return i


def _tracking() -> config_dict.ConfigDict:
  """Ours: tracks and filtered poses on video input (centerpose_jax/inference/tracking.py)."""
  t = config_dict.ConfigDict()
  t.enabled = True  # video input only; image folders are always per image
  t.max_age = 10  # frames without a detection before a confirmed track is dropped
  t.min_hits = 3  # consecutive detections that confirm a track
  t.min_iou = 0.1  # smallest 2D cuboid IoU of a track-detection pair
  t.pose_weight = 1.0  # weight of the pose distance in the association cost
  t.outlier_gate = 50.0  # squared Mahalanobis distance (6 dof) above which a pose is an outlier; 0 disables
  t.outlier_frames = 10  # consecutive agreeing outliers that restart a track's filter
  t.keypoint_noise = 2.0  # keypoint standard deviation, output-grid cells
  t.scale_noise = 0.05  # relative-scale standard deviation per frame
  t.translation_acceleration = 2.0  # relative-scale units / s^2
  t.rotation_acceleration = 1.0  # rad / s^2
  t.scale_acceleration = 0.1  # relative-scale units / s^2
  return t


def _export() -> config_dict.ConfigDict:
  x = config_dict.ConfigDict()
  x.results_dir = config_dict.placeholder(str)
  x.gpu_id = 0
  x.checkpoint = ""
  x.onnx_file = ""  # "" = <export.results_dir or results_dir/export>/<model_name>.onnx
  x.on_cpu = False
  x.input_channel = 3
  x.input_width = 512
  x.input_height = 512
  x.opset_version = 16
  x.batch_size = -1  # -1: dynamic batch
  x.verbose = False
  x.num_select = 100
  x.do_constant_folding = True
  return x


def _gen_trt_engine() -> config_dict.ConfigDict:
  """TAO-deploy's engine options, used by tools/gen_trt_engine.py (the trtexec command line)."""
  g = config_dict.ConfigDict()
  g.results_dir = config_dict.placeholder(str)
  g.gpu_id = 0
  g.onnx_file = ""  # "" = export.py's output (export.onnx_file or its default)
  g.trt_engine = ""  # "" = <gen_trt_engine.results_dir or results_dir/gen_trt_engine>/<model_name>.engine
  g.timing_cache = config_dict.placeholder(str)
  g.input_channel = 3
  g.input_width = 512
  g.input_height = 512
  g.opset_version = 16
  g.batch_size = -1
  g.verbose = False
  g.tensorrt = config_dict.ConfigDict()
  g.tensorrt.data_type = "FP32"  # FP32 | FP16 | INT8 (INT8 needs calibration.cal_cache_file)
  g.tensorrt.workspace_size = 1024  # MiB
  g.tensorrt.min_batch_size = 1
  g.tensorrt.opt_batch_size = 1
  g.tensorrt.max_batch_size = 1
  g.tensorrt.calibration = config_dict.ConfigDict()
  g.tensorrt.calibration.cal_image_dir = ()
  g.tensorrt.calibration.cal_cache_file = ""
  g.tensorrt.calibration.cal_batch_size = 1
  g.tensorrt.calibration.cal_batches = 1
  return g


def get_config() -> config_dict.ConfigDict:
  """The full default configuration (TAO schema defaults)."""
  config = config_dict.ConfigDict()
  config.model_name = "centerpose"
  config.results_dir = "results"  # TAO: /results (a container path); ours is relative to the working dir
  config.encryption_key = config_dict.placeholder(str)
  config.dataset = _dataset()
  config.model = _model()
  config.train = _train()
  config.evaluate = _evaluate()
  config.inference = _inference()
  config.export = _export()
  config.gen_trt_engine = _gen_trt_engine()
  return config


def get_category_config(category: str) -> config_dict.ConfigDict:
  """The default configuration for one object category: `dataset.category` and its row of the category table
  (`categories.category`): for the Objectron classes only chair's and bottle's symmetry copies and bottle's
  evaluation symmetry differ from `get_config()`."""
  config = get_config()
  row = categories.category(category)
  config.dataset.category = row.name
  config.dataset.num_symmetry = row.num_symmetry
  config.dataset.flip_idx = row.flip_idx
  config.evaluate.eval_num_symmetry = row.eval_num_symmetry
  return config


class ConfigError(errors.CenterPoseError, ValueError):
  """A config with one or more invalid fields; the message lists every problem, one per line."""

  def __init__(self, problems: Sequence[str]):
    self.problems = list(problems)
    super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems))


def get_field(config, path: str):
  """The value of the dotted field `path` ("train.optim.lr") of `config`."""
  node = config
  for part in path.split("."):
    node = node[part]
  return node


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


def input_size(dataset_config) -> Tuple[int, int]:
  """(width, height) in pixels of the network input: `dataset.input_res`, an int (square) or (width, height)."""
  res = dataset_config.input_res
  return (int(res), int(res)) if isinstance(res, int) else (int(res[0]), int(res[1]))


def output_size(dataset_config) -> Tuple[int, int]:
  """(width, height) of the output grid (the head maps): the input size / 4."""
  width, height = input_size(dataset_config)
  return width // DOWN_RATIO, height // DOWN_RATIO


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


def format_default(value) -> str:
  """A config value as docs/configuration.md writes it (strings quoted, lists in JSON, None as None)."""
  if value is None:
    return "None"
  if isinstance(value, str):
    return f'"{value}"'
  if isinstance(value, (list, tuple)):
    return json.dumps(list(value)).replace('"', "'")
  return repr(value)
