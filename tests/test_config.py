"""Configs, validation, TAO spec import and the entry points' flag handling."""

import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from centerpose_jax import config as config_lib
from centerpose_jax.convert import tao_spec
from configs import default

REPO = pathlib.Path(__file__).resolve().parents[1]


def _flat(config):
  return {path: _leaf(config, path) for path in config_lib.config_fields(config)}


def _leaf(config, path):
  node = config
  for part in path.split("."):
    node = node[part]
  return node.to_dict() if hasattr(node, "to_dict") else node


def _run_entry(script, *args):
  return subprocess.run([sys.executable, str(REPO / script), *args], capture_output=True, text=True,
                        cwd=REPO, timeout=120, check=False)


@pytest.mark.parametrize("script,task_args", [
    ("train.py", ["--config.dataset.train_data=/data/bike/train"]),
    ("evaluate.py", ["--config.evaluate.checkpoint=/data/bike/ckpt", "--config.dataset.test_data=/data/bike/test"]),
    ("infer.py", ["--config.inference.checkpoint=/data/bike/ckpt", "--config.dataset.inference_data=/data/bike/x"]),
    ("export.py", ["--config.export.checkpoint=/data/bike/ckpt", "--config.export.onnx_file=/tmp/m.onnx"]),
])
def test_command_line_overrides_reach_the_config(script, task_args):
  # An override that makes the config invalid proves the value arrived: the error quotes it back.
  result = _run_entry(script, "--config=configs/bike.py", "--config.train.num_epochs=3",
                      "--config.train.checkpoint_interval=5", "--config.model.backbone.model_type=DLA35",
                      *task_args)
  assert result.returncode == 2, result.stderr
  assert "model.backbone.model_type: got 'DLA35'" in result.stderr
  assert "Traceback" not in result.stderr
  # The task's own data/checkpoint paths are checked and quoted as given.
  assert "'/data/bike/" in result.stderr
  if script == "train.py":
    assert "train.checkpoint_interval: got 5, expected at most train.num_epochs (3)" in result.stderr


def test_sequence_fields_are_overridable_on_the_command_line():
  result = _run_entry("train.py", "--config=configs/bike.py", "--config.train.optim.lr_steps=(30, 20)",
                      "--config.dataset.train_data=/data/bike/train")
  assert result.returncode == 2, result.stderr
  assert "train.optim.lr_steps: got [30, 20]" in result.stderr  # the tuple arrived and was checked


def test_helpfull_lists_the_config_flags():
  result = _run_entry("train.py", "--helpfull")  # absl exits with status 1 after printing help
  text = " ".join(result.stdout.split())
  for field in ("--config.train.num_epochs", "--config.dataset.train_data", "--config.model.backbone.model_type",
                "--config.export.opset_version", "--config.inference.focal_length_x"):
    assert field in text


def test_a_tao_spec_works_as_the_config_flag(tmp_path):
  spec = tmp_path / "train.yaml"
  spec.write_text(yaml.safe_dump({"train": {"num_epochs": 2, "checkpoint_interval": 4},
                                  "dataset": {"train_data": "/nowhere/train"}}))
  result = _run_entry("train.py", f"--config={spec}", "--config.train.precision=fp12")
  assert result.returncode == 2
  assert "train.checkpoint_interval: got 4, expected at most train.num_epochs (2)" in result.stderr
  assert "train.precision: got 'fp12'" in result.stderr
  assert "'/nowhere/train' does not exist" in result.stderr


def _valid_train_config(tmp_path):
  config = default.get_category_config("bike")
  config.dataset.train_data = str(tmp_path)
  return config


def test_the_default_config_is_valid_for_training_with_data(tmp_path):
  assert config_lib.collect_problems(_valid_train_config(tmp_path), "train") == []


@pytest.mark.parametrize("field,value,expected", [
    ("model.backbone.model_type", "resnet50", "model.backbone.model_type: got 'resnet50', expected one of DLA34"),
    ("dataset.num_classes", 2, "dataset.num_classes: got 2, expected 1"),
    ("train.precision", "fp8", "train.precision: got 'fp8', expected one of fp32, bf16, fp16"),
    ("dataset.batch_size", 0, "dataset.batch_size: got 0, expected a positive number"),
    ("train.num_epochs", -1, "train.num_epochs: got -1, expected a positive number"),
    ("train.checkpoint_interval", 0, "train.checkpoint_interval: got 0, expected a positive number"),
    ("train.validation_interval", 11, "train.validation_interval: got 11, expected at most train.num_epochs (10)"),
    ("train.checkpoint_interval", 20, "train.checkpoint_interval: got 20, expected at most train.num_epochs (10)"),
    ("train.optim.lr_steps", [120, 90], "train.optim.lr_steps: got [120, 90], expected strictly increasing"),
    ("train.optim.lr_steps", [90, 90], "train.optim.lr_steps: got [90, 90], expected strictly increasing"),
    ("train.optim.lr", 0.0, "train.optim.lr: got 0.0, expected a positive number"),
    ("dataset.input_res", 500, "dataset.input_res: got 500, expected a positive multiple of 32"),
    ("dataset.flip", 1.5, "dataset.flip: got 1.5, expected a number in [0, 1]"),
    ("dataset.train_data", "", "dataset.train_data: training data folder or packed dataset is required"),
    ("dataset.train_data", "/no/such/dir", "dataset.train_data: '/no/such/dir' does not exist"),
    ("train.resume_training_checkpoint_path", "/no/ckpt", "train.resume_training_checkpoint_path: '/no/ckpt' does not"),
    ("train.pretrained_model_path", "/no/w", "train.pretrained_model_path: '/no/w' does not exist"),
    ("train.grad_accumulation_steps", 0, "train.grad_accumulation_steps: got 0, expected a positive number"),
    ("train.clip_grad_val", -1.0, "train.clip_grad_val: got -1.0, expected a number >= 0"),
    ("train.num_gpus", 0, "train.num_gpus: got 0, expected a positive number (or -1 for all)"),
    ("model.backbone.width_multiplier", 0.0, "model.backbone.width_multiplier: got 0.0, expected a positive"),
    ("inference.object_height", -0.3, "inference.object_height: got -0.3, expected a number >= 0"),
])
def test_each_validation_rule_reports_the_field_value_and_what_is_allowed(tmp_path, field, value, expected):
  config = _valid_train_config(tmp_path)
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value
  problems = config_lib.collect_problems(config, "train")
  assert any(expected in p for p in problems), problems


def test_all_problems_are_reported_at_once(tmp_path):
  config = _valid_train_config(tmp_path)
  config.train.precision = "fp64"
  config.dataset.batch_size = -2
  config.model.backbone.model_type = "vgg"
  with pytest.raises(config_lib.ConfigError) as error:
    config_lib.validate(config, "train")
  assert len(error.value.problems) == 3
  assert all(word in str(error.value) for word in ("fp64", "-2", "vgg"))


def test_export_rules(tmp_path):
  config = default.get_config()
  config.export.checkpoint = str(tmp_path)
  config.export.onnx_file = str(tmp_path / "m.onnx")
  assert config_lib.collect_problems(config, "export") == []
  config.export.input_height = 500
  config.export.input_channel = 1
  config.export.batch_size = 0
  problems = "\n".join(config_lib.collect_problems(config, "export"))
  assert "export.input_height: got 500, expected a positive multiple of 32" in problems
  assert "export.input_channel: got 1, expected 3" in problems
  assert "export.batch_size: got 0, expected -1 (dynamic) or a positive number" in problems


def test_evaluate_and_infer_need_data_and_weights():
  config = default.get_config()
  evaluate = "\n".join(config_lib.collect_problems(config, "evaluate"))
  assert "dataset.test_data: evaluation needs dataset.test_data (or dataset.val_data)" in evaluate
  assert "evaluate.checkpoint: checkpoint to evaluate (or evaluate.onnx_file) is required" in evaluate
  infer = "\n".join(config_lib.collect_problems(config, "infer"))
  assert "dataset.inference_data: image folder, image or video to run on is required" in infer
  config.inference.onnx_file = "/no/model.onnx"
  infer = "\n".join(config_lib.collect_problems(config, "infer"))
  assert "inference.onnx_file: '/no/model.onnx' does not exist" in infer


@pytest.mark.parametrize("num_gpus,gpu_ids,available,expected", [
    (1, [0], 8, [0]),
    (2, [0], 8, [0, 1]),     # num_gpus asks for more: follow it
    (1, [2, 3], 8, [2, 3]),  # gpu_ids asks for more: follow them
    (-1, [0], 4, [0, 1, 2, 3]),
])
def test_tao_device_rule(num_gpus, gpu_ids, available, expected):
  assert config_lib.resolve_device_ids(num_gpus, gpu_ids, available) == expected


def test_asking_for_more_devices_than_exist_says_how_many_there_are():
  with pytest.raises(config_lib.ConfigError, match="only 2 local device"):
    config_lib.resolve_device_ids(4, [0], 2)
  with pytest.raises(config_lib.ConfigError, match="only 2 local device"):
    config_lib.resolve_device_ids(1, [5], 2)


TAO_TRAIN_SPEC = """
results_dir: /results/bike
encryption_key: tlt_encode
dataset:
  train_data: /data/bike/train
  val_data: /data/bike/val
  num_classes: 1
  batch_size: 32
  workers: 4
  category: bike
  num_symmetry: 1
  max_objs: 10
  _eig_val: [0.2, 0.02, 0.003]
train:
  num_gpus: 1
  validation_interval: 20
  checkpoint_interval: 20
  num_epochs: 40
  clip_grad_val: 100.0
  seed: 317
  pretrained_model_path: null
  precision: fp32
  optim:
    lr: 6e-05
    lr_steps: [90, 120]
model:
  down_ratio: 4
  use_pretrained: true
  backbone:
    model_type: fan_small
    pretrained_backbone_path: /pretrained/fan_small_hybrid_nvimagenet.pth
"""


def test_a_tao_spec_maps_onto_the_config(tmp_path):
  spec = tmp_path / "train.yaml"
  spec.write_text(TAO_TRAIN_SPEC)
  config = tao_spec.load_tao_spec(str(spec))
  assert config.results_dir == "/results/bike"
  assert config.encryption_key == "tlt_encode"
  assert config.dataset.batch_size == 32 and config.dataset.category == "bike"
  assert config.dataset.eig_val == (0.2, 0.02, 0.003)
  assert config.train.num_epochs == 40 and config.train.seed == 317
  assert config.train.optim.lr == pytest.approx(6e-5)
  assert config.model.use_pretrained is True
  assert config.model.backbone.pretrained_backbone_path.endswith("fan_small_hybrid_nvimagenet.pth")
  # Untouched fields keep their defaults.
  assert config.train.optim.lr_decay == 0.1 and config.inference.num_select == 100


def test_a_tao_spec_without_a_backbone_means_taos_default_network(tmp_path):
  spec = tmp_path / "train.yaml"
  spec.write_text(TAO_TRAIN_SPEC.replace("    model_type: fan_small\n", ""))
  assert "model_type" not in spec.read_text()
  assert tao_spec.load_tao_spec(str(spec)).model.backbone.model_type == "fan_small"  # TAO's schema default
  spec.write_text(TAO_TRAIN_SPEC.replace("model_type: fan_small", "model_type: DLA34"))
  assert tao_spec.load_tao_spec(str(spec)).model.backbone.model_type == "DLA34"


def test_unknown_spec_keys_are_reported_not_ignored(tmp_path):
  spec = tmp_path / "bad.yaml"
  spec.write_text("train:\n  num_epoch: 3\n  optim:\n    momentum: 0.9\nfoo: 1\n")
  with pytest.raises(tao_spec.SpecError) as error:
    tao_spec.load_tao_spec(str(spec))
  message = str(error.value)
  for key in ("train.num_epoch", "train.optim.momentum", "foo"):
    assert f"{key}: unknown key" in message


def test_category_configs_differ_from_default_only_where_intended():
  base = _flat(default.get_config())
  expected_symmetry = {"chair": 4, "bottle": 12}
  for category in default.OBJECTRON_CATEGORIES:
    module = __import__(f"configs.{category}", fromlist=["get_config"])
    config = _flat(module.get_config())
    diff = {k: v for k, v in config.items() if base[k] != v}
    intended = {"dataset.category": category} if category != base["dataset.category"] else {}
    if category in expected_symmetry:
      intended["dataset.num_symmetry"] = expected_symmetry[category]
    if category == "bottle":
      intended["evaluate.eval_num_symmetry"] = 12
    assert diff == intended, category
    assert set(config) == set(base)


def test_demo_config_is_a_small_dla(tmp_path):
  from configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config()
  config.dataset.train_data = str(tmp_path)
  config.dataset.val_data = str(tmp_path)
  assert config_lib.collect_problems(config, "train") == []
  assert config.dataset.input_res <= 256 and config.model.backbone.model_type == "DLA34"


def test_configuration_doc_lists_every_field_with_its_default():
  doc = (REPO / "docs" / "configuration.md").read_text()
  rows = {}
  for line in doc.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if line.startswith("| `") and len(cells) >= 3:
      rows[cells[0].strip("`")] = cells[1].strip("`")
  fields = _flat(default.get_config())
  assert set(rows) == set(fields), sorted(set(rows) ^ set(fields))
  for field, value in fields.items():
    assert rows[field] == config_lib.format_default(value), field


def test_config_files_load_from_any_working_directory(tmp_path):
  result = subprocess.run([sys.executable, str(REPO / "train.py"), "--config.train.precision=fp9"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
  assert result.returncode == 2 and "train.precision: got 'fp9'" in result.stderr


def test_tao_spec_to_config_writes_an_equivalent_config_file(tmp_path):
  spec = tmp_path / "train.yaml"
  spec.write_text(TAO_TRAIN_SPEC)
  result = subprocess.run([sys.executable, str(REPO / "tools" / "tao_spec_to_config.py"), str(spec)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=True)
  config_file = tmp_path / "converted.py"
  config_file.write_text(result.stdout)
  namespace = {}
  exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # pylint: disable=exec-used
  assert _flat(namespace["get_config"]()) == _flat(tao_spec.load_tao_spec(str(spec)))
  assert "config.train.num_epochs = 40" in result.stdout
  assert "config.inference" not in result.stdout  # untouched sections are not repeated


def test_defaults_are_the_specs():
  config = default.get_config()
  assert config.model.backbone.model_type == "DLA34"
  # TAO's infer.yaml camera: photos without labels run without setting intrinsics.
  inference = config.inference
  assert (inference.principle_point_x, inference.principle_point_y) == (300.77100118001306, 392.8848775227865)
  assert inference.focal_length_x == inference.focal_length_y == 615.0476582845052 and inference.skew == 0.0


def _non_default(value):
  if isinstance(value, bool):
    return not value
  if isinstance(value, int):
    return value + 1
  return "x.engine" if value is None else value + "x"


@pytest.mark.parametrize("path", sorted(config_lib.UNSUPPORTED_OPTIONS))
def test_an_option_without_an_implementation_is_rejected_unless_default(tmp_path, path):
  default_value, reason = config_lib.UNSUPPORTED_OPTIONS[path]
  config = _valid_train_config(tmp_path)
  assert _leaf(config, path) == default_value
  *parents, leaf = path.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = _non_default(default_value)
  for task in ("train", "evaluate", "infer", "export"):
    problems = config_lib.collect_problems(config, task)
    assert f"{path}: got {node[leaf]!r}, only {default_value!r} is supported: {reason}" in problems, task


def test_deploy_only_fields_say_where_they_are_used(tmp_path):
  config = _valid_train_config(tmp_path)
  config.inference.trt_engine = "/models/centerpose.engine"
  problems = "\n".join(config_lib.collect_problems(config, "infer"))
  assert "inference.trt_engine: got '/models/centerpose.engine'" in problems
  assert "tools/gen_trt_engine.py" in problems and "inference.onnx_file" in problems


def test_training_only_paths_do_not_block_evaluate_infer_export(tmp_path):
  config = _valid_train_config(tmp_path)
  config.model.use_pretrained = True
  config.model.backbone.pretrained_backbone_path = "/no/dla34.pth"
  config.dataset.test_data = config.dataset.inference_data = str(tmp_path)
  config.evaluate.checkpoint = config.inference.checkpoint = config.export.checkpoint = str(tmp_path)
  assert any("model.backbone.pretrained_backbone_path: '/no/dla34.pth' does not exist" in p
             for p in config_lib.collect_problems(config, "train"))
  for task in ("evaluate", "infer", "export"):
    assert config_lib.collect_problems(config, task) == [], task
  config.model.backbone.pretrained_backbone_path = ""  # DLA34: TAO's public weights are downloaded
  assert config_lib.collect_problems(config, "train") == []
  config.model.backbone.model_type = "fan_small"  # FAN: no public download
  assert any(p.startswith("model.backbone.pretrained_backbone_path: model.use_pretrained=True with fan_small "
                          "needs the FAN ImageNet weights file") for p in config_lib.collect_problems(config, "train"))


def test_non_square_input_res_is_width_height(tmp_path):
  config = _valid_train_config(tmp_path)
  config.dataset.input_res, config.dataset.output_res = (256, 384), (64, 96)
  assert config_lib.collect_problems(config, "train") == []
  assert config_lib.input_size(config.dataset) == (256, 384) and config_lib.output_size(config.dataset) == (64, 96)
  config.dataset.output_res = 64
  assert "dataset.output_res: got 64, expected input_res / 4 = (64, 96)" in config_lib.collect_problems(config, "train")
  config.dataset.input_res = (256, 380)
  assert any(p.startswith("dataset.input_res: got (256, 380), expected a positive multiple of 32")
             for p in config_lib.collect_problems(config, "train"))


def test_a_tao_spec_gets_its_category_defaults_and_interpolations(tmp_path, caplog):
  spec = tmp_path / "chair.yaml"
  spec.write_text("results_dir: /results/chair\n"
                  "dataset:\n  category: chair\n  input_res: [256, 384]\n  output_res: [64, 96]\n"
                  "train:\n  validation_interval: 20\n  checkpoint_interval: ${train.validation_interval}\n"
                  "  results_dir: ${results_dir}/train\n")
  config = tao_spec.load_tao_spec(str(spec))
  assert config.dataset.num_symmetry == 4  # configs/chair.py's, as TAO forces for chair
  assert config.train.checkpoint_interval == 20 and config.train.results_dir == "/results/chair/train"
  assert config.dataset.input_res == (256, 384)
  spec.write_text("dataset:\n  category: chair\n  num_symmetry: 1\ntrain:\n  num_epochs: ${train.nope}\n")
  with pytest.raises(tao_spec.SpecError, match=r"train\.num_epochs: '\$\{train\.nope\}' refers to train\.nope"):
    tao_spec.load_tao_spec(str(spec))
  spec.write_text("dataset:\n  category: chair\n  num_symmetry: 1\n")
  assert tao_spec.load_tao_spec(str(spec)).dataset.num_symmetry == 1  # as written, with a warning
  assert "TAO ignores the spec's value and uses 4" in caplog.text
