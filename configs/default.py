"""Every option of TAO's CenterPose experiment spec, under TAO's names, with TAO's schema defaults.

Sections mirror the TAO spec: top level, `dataset`, `model`, `train`, `evaluate`, `inference`, `export`,
`gen_trt_engine`. Options marked "ours" do not exist in TAO; everything else keeps TAO's name and default
(differences are listed in docs/differences-from-tao.md). docs/configuration.md is checked against this file
by tests/test_config_docs.py.

Usage:
  python train.py --config=configs/default.py --config.dataset.train_data=/data/bike/train ...
"""

from ml_collections import config_dict

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
  d.category = "cereal_box"
  d.num_symmetry = 1  # chair forces 4 and bottle 12, as TAO
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
  d.flip_idx = ((1, 5), (3, 7), (2, 6), (4, 8))
  d.no_color_aug = False
  d.not_rand_crop = False
  d.aug_rot = 0.0
  d.rotate = 0.0  # ours (NVlabs' name): the bound in degrees of the aug_rot rotation
  d.flip = 0.5
  d.input_res = 512  # pixels, any multiple of 32
  d.output_res = 128  # input_res / down_ratio
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
  m.backbone.model_type = "fan_small"  # DLA34 | fan_small | fan_base | fan_large
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


def _evaluate() -> config_dict.ConfigDict:
  e = config_dict.ConfigDict()
  e.num_gpus = 1
  e.gpu_ids = (0,)
  e.num_nodes = 1
  e.checkpoint = ""
  e.trt_engine = config_dict.placeholder(str)
  e.results_dir = config_dict.placeholder(str)
  e.opencv = False  # TAO schema: True, which compares OpenCV-frame poses with OpenGL ground truth (see docs)
  e.eval_num_symmetry = 1
  e.tao_compatible = False  # ours: reproduce TAO's matching quirks exactly
  e.onnx_file = ""  # ours: evaluate an exported ONNX with onnxruntime instead of the JAX model
  return e


def _inference() -> config_dict.ConfigDict:
  i = config_dict.ConfigDict()
  i.num_gpus = 1
  i.gpu_ids = (0,)
  i.num_nodes = 1
  i.checkpoint = ""
  i.trt_engine = config_dict.placeholder(str)
  i.results_dir = config_dict.placeholder(str)
  i.visualization_threshold = 0.3
  i.num_select = 100
  i.use_pnp = True
  i.save_json = True
  i.save_visualization = True
  i.opencv = True
  i.principle_point_x = 0.0  # pixels; a per-image JSON with camera_data overrides the intrinsics
  i.principle_point_y = 0.0
  i.focal_length_x = 0.0
  i.focal_length_y = 0.0
  i.skew = 0.0
  i.axis_size = 0.5  # metres (relative-scale units) of the drawn axes
  i.pnp_keypoints = "displacement"  # ours: PnP points; "displacement+heatmap" = 16 points as NVlabs
  i.onnx_file = ""  # ours: run an exported ONNX with onnxruntime instead of the JAX model
  return i


def _export() -> config_dict.ConfigDict:
  x = config_dict.ConfigDict()
  x.results_dir = config_dict.placeholder(str)
  x.gpu_id = 0
  x.checkpoint = ""
  x.onnx_file = ""
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
  """TAO-deploy's engine options: accepted so TAO specs load; see docs/deployment.md for trtexec."""
  g = config_dict.ConfigDict()
  g.results_dir = config_dict.placeholder(str)
  g.gpu_id = 0
  g.onnx_file = ""
  g.trt_engine = ""
  g.timing_cache = config_dict.placeholder(str)
  g.batch_size = -1
  g.verbose = False
  g.tensorrt = config_dict.ConfigDict()
  g.tensorrt.data_type = "FP32"
  g.tensorrt.workspace_size = 1024
  g.tensorrt.min_batch_size = 1
  g.tensorrt.opt_batch_size = 1
  g.tensorrt.max_batch_size = 1
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


# dataset.num_symmetry that TAO hard-codes per category (chair 4, bottle 12); others use the config value.
CATEGORY_SYMMETRY = {"chair": 4, "bottle": 12}
OBJECTRON_CATEGORIES = ("bike", "book", "bottle", "camera", "cereal_box", "chair", "cup", "laptop", "shoe")


def get_category_config(category: str) -> config_dict.ConfigDict:
  """The default configuration for one Objectron category: only `dataset.category`, the symmetry copies and,
  for rotationally symmetric bottles, the evaluation symmetry differ from `get_config()`."""
  config = get_config()
  config.dataset.category = category
  if category in CATEGORY_SYMMETRY:
    config.dataset.num_symmetry = CATEGORY_SYMMETRY[category]
  if category == "bottle":
    config.evaluate.eval_num_symmetry = CATEGORY_SYMMETRY[category]
  return config
