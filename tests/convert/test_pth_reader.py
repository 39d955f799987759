"""The torch-free `.pth` reader (convert/pth_reader.py) on files written by real PyTorch, and its refusals.

torch is a test-only dependency: it writes the files here; the reader never imports it.
"""

import argparse
import ast
import collections
import io
import os
import pathlib
import pickle
import sys
import types
import zipfile

import numpy as np
import pytest

from centerpose_jax.convert import pth_reader
from centerpose_jax.convert import pytorch
from tools import convert_checkpoint

torch = pytest.importorskip("torch", reason="torch writes the .pth files these tests read (requirements-dev.txt)")

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "centerpose_jax"


class _ShellCommand:
  """Pickles as a call of os.system: loading it with pickle.load would run `command`."""

  def __init__(self, command):
    self.command = command

  def __reduce__(self):
    return os.system, (self.command,)


def _not_importable_class(module_name: str, class_name: str = "HyperParameters"):
  """A class pickled by reference to `module_name`, a module that exists only while `torch.save` runs."""
  module = types.ModuleType(module_name)
  cls = type(class_name, (), {"__module__": module_name})
  setattr(module, class_name, cls)
  return module, cls


def _save_with_module(obj, path, module):
  sys.modules[module.__name__] = module
  try:
    torch.save(obj, path)
  finally:
    del sys.modules[module.__name__]


def test_tensors_come_back_exactly_with_every_layout_and_dtype(tmp_path):
  base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
  tensors = {
      "contiguous": base,
      "transposed": base.t(),  # stride (1, 6)
      "offset_view": base[1:3, 2:5],  # shares the storage, offset 8
      "half": torch.linspace(-2, 2, 7, dtype=torch.float16),
      "double": torch.tensor([[1e-300, 3.5]], dtype=torch.float64),
      "int64": torch.tensor([-(2**40), 7]),
      "uint8": torch.tensor([0, 255], dtype=torch.uint8),
      "bool": torch.tensor([True, False]),
      "scalar": torch.tensor(2.5),
      "empty": torch.zeros(0, 3),
  }
  path = tmp_path / "state.pth"
  torch.save(collections.OrderedDict(tensors), path)
  loaded = pth_reader.load(path)
  assert isinstance(loaded, collections.OrderedDict) and list(loaded) == list(tensors)
  for name, tensor in tensors.items():
    assert loaded[name].dtype == tensor.numpy().dtype, name
    np.testing.assert_array_equal(loaded[name], tensor.numpy(), err_msg=name)
  # bfloat16 (numpy has none) is widened to float32 exactly.
  torch.save({"w": torch.tensor([1.5, -2.25, 3e38, 1e-30], dtype=torch.bfloat16)}, path)
  expected = torch.tensor([1.5, -2.25, 3e38, 1e-30], dtype=torch.bfloat16).float().numpy()
  np.testing.assert_array_equal(pth_reader.load(path)["w"], expected)


def test_a_lightning_checkpoint_with_extra_objects_loads_its_state_dict(tmp_path):
  """Hyper-parameters of a class that cannot be imported at load time, callbacks, optimizer and scheduler
  states: the state_dict comes back, the rest are inert records, nothing is imported."""
  module, hyper_class = _not_importable_class("lightning_user_code_not_installed")
  hyper = hyper_class()
  hyper.lr, hyper.backbone = 6e-5, "DLA34"
  weight = torch.nn.Parameter(torch.randn(3, 2))
  optimizer = torch.optim.Adam([weight])
  weight.grad = torch.ones_like(weight)
  optimizer.step()
  scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[90, 120])
  state_dict = {"model.hm.3.bias": torch.full((1,), -2.19), "model.wh.0.weight": torch.randn(4, 2, 3, 3)}
  checkpoint = {
      "epoch": 39, "global_step": 1234, "pytorch-lightning_version": "2.1.0", "state_dict": state_dict,
      "optimizer_states": [optimizer.state_dict()], "lr_schedulers": [scheduler.state_dict()],
      "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_score": torch.tensor(0.5),
                                                          "dirpath": "/results/train"}},
      "hyper_parameters": hyper, "hparams_namespace": argparse.Namespace(seed=317),
      "loops": {"device": torch.device("cuda", 1), "shape": torch.Size([2, 3]), "dtype": torch.bfloat16,
                "counts": collections.defaultdict(list, {"a": [1]})},
  }
  path = tmp_path / "model_epoch_039_step_01234.pth"
  _save_with_module(checkpoint, path, module)

  assert "lightning_user_code_not_installed" not in sys.modules
  loaded = pth_reader.load(path)
  assert "lightning_user_code_not_installed" not in sys.modules
  assert loaded["hyper_parameters"].global_name == "lightning_user_code_not_installed.HyperParameters"
  assert loaded["hyper_parameters"].state == {"lr": 6e-5, "backbone": "DLA34"}
  assert loaded["hparams_namespace"].state == {"seed": 317}
  assert loaded["lr_schedulers"][0]["milestones"] == collections.Counter({90: 1, 120: 1})
  assert loaded["loops"] == {"device": "cuda:1", "shape": (2, 3), "dtype": "torch.bfloat16", "counts": {"a": [1]}}
  np.testing.assert_array_equal(loaded["optimizer_states"][0]["state"][0]["exp_avg"],
                                optimizer.state_dict()["state"][0]["exp_avg"].numpy())
  read = pytorch.read_state_dict(path)
  assert sorted(read) == sorted(state_dict)
  for key, value in state_dict.items():
    np.testing.assert_array_equal(read[key], value.numpy())


@pytest.mark.parametrize("where", ["top_level", "hyper_parameters", "state_dict_value"])
def test_a_pickle_that_would_run_a_shell_command_is_refused_and_runs_nothing(tmp_path, where):
  marker = tmp_path / "pwned"
  payload = _ShellCommand(f"touch {marker}")
  checkpoint = {
      "top_level": payload,
      "hyper_parameters": {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": payload},
      "state_dict_value": {"state_dict": {"w": payload}},
  }[where]
  path = tmp_path / "evil.pth"
  torch.save(checkpoint, path)
  with pytest.raises(pth_reader.UnsafePickleError, match=rf"`{os.system.__module__}\.system`") as refused:
    pytorch.read_state_dict(path)
  assert refused.value.global_name == f"{os.system.__module__}.system"
  assert str(path) in str(refused.value)
  assert not marker.exists()


def test_the_reported_attack_paths_refuse_the_file(tmp_path, capsys):
  """tools/convert_checkpoint.py and model.backbone.pretrained_backbone_path both read through the reader."""
  marker = tmp_path / "pwned"
  path = tmp_path / "dla34-ba72cf86.pth"
  torch.save({"fc.weight": torch.zeros(2), "exploit": _ShellCommand(f"touch {marker}")}, path)
  assert convert_checkpoint.main(["--checkpoint", str(path), "--arch", "DLA34", "--out", str(tmp_path / "o")]) == 2
  assert "system`" in capsys.readouterr().err
  with pytest.raises(pth_reader.UnsafePickleError):
    pytorch.load_pretrained_backbone({"params": {}}, path, "DLA34")
  assert not marker.exists()


def test_objects_of_unknown_classes_are_never_called(tmp_path):
  """A REDUCE of any global outside the allow-list is refused, e.g. builtins.eval or subprocess.Popen."""
  for function, argument in ((eval, "1 + 1"), (__import__("subprocess").getoutput, "true")):
    class Call:
      def __reduce__(self, function=function, argument=argument):
        return function, (argument,)
    path = tmp_path / "call.pth"
    torch.save({"state_dict": {}, "x": Call()}, path)
    with pytest.raises(pth_reader.UnsafePickleError, match=function.__name__):
      pth_reader.load(path)


def test_a_state_dict_entry_that_is_not_a_tensor_is_refused_naming_its_class(tmp_path):
  module, cls = _not_importable_class("weights_helpers_not_installed", "Tensorish")
  path = tmp_path / "odd.pth"
  _save_with_module({"state_dict": {"model.hm.3.bias": cls()}}, path, module)
  with pytest.raises(pth_reader.UnsafePickleError, match="weights_helpers_not_installed.Tensorish"):
    pytorch.read_state_dict(path)


def test_other_files_get_a_message_saying_what_they_are(tmp_path):
  legacy = tmp_path / "legacy.pth"
  torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
  with pytest.raises(pth_reader.PthError, match="legacy .*weights_only=True"):
    pytorch.read_state_dict(legacy)
  scripted = tmp_path / "scripted.pt"
  torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), scripted)
  with pytest.raises(pth_reader.PthError, match="TorchScript"):
    pytorch.read_state_dict(scripted)
  text = tmp_path / "notes.pth"
  text.write_text("not weights")
  with pytest.raises(pth_reader.PthError, match="not a PyTorch checkpoint"):
    pytorch.read_state_dict(text)
  with pytest.raises(pytorch.WeightsFileError, match="no such"):
    pytorch.read_state_dict(tmp_path / "absent.pth")


def _write_archive(path, pickled: bytes, storages: dict, byteorder="little"):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("archive/data.pkl", pickled)
    archive.writestr("archive/byteorder", byteorder)
    for key, data in storages.items():
      archive.writestr(f"archive/data/{key}", data)


class _StoragePickler(pickle.Pickler):
  """Pickles `_StorageRef`s as PyTorch's persistent storage ids (to craft files torch would not write)."""

  def persistent_id(self, obj):
    if isinstance(obj, _StorageRef):
      return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
    return None


class _StorageRef:
  def __init__(self, key, numel):
    self.key, self.numel = key, numel


def _tensor_pickle(size, stride, numel, offset=0) -> bytes:
  buffer = io.BytesIO()
  rebuild = torch._utils._rebuild_tensor_v2  # pylint: disable=protected-access
  _StoragePickler(buffer, protocol=2).dump(
      {"w": _Rebuild(rebuild, (_StorageRef("0", numel), offset, size, stride, False, collections.OrderedDict()))})
  return buffer.getvalue()


class _Rebuild:
  def __init__(self, function, args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


def test_big_endian_storages_and_out_of_bounds_views(tmp_path):
  values = np.arange(6, dtype=np.float32)
  path = tmp_path / "big.pth"
  _write_archive(path, _tensor_pickle((2, 3), (3, 1), 6), {"0": values.astype(">f4").tobytes()}, "big")
  np.testing.assert_array_equal(pth_reader.load(path)["w"], values.reshape(2, 3))
  # A view that reads past its storage (a crafted stride) is refused before numpy touches the memory.
  _write_archive(path, _tensor_pickle((2, 3), (300, 1), 6), {"0": values.tobytes()})
  with pytest.raises(pth_reader.PthError, match="reads past its storage"):
    pth_reader.load(path)
  _write_archive(path, _tensor_pickle((2, 3), (3, 1), 6), {"0": values[:4].tobytes()})
  with pytest.raises(pth_reader.PthError, match="has 16 bytes, 6 elements"):
    pth_reader.load(path)


def test_torch_is_not_needed_and_not_imported_by_the_package(tmp_path, monkeypatch):
  path = tmp_path / "model.pth"
  torch.save({"state_dict": {"model.hm.3.bias": torch.full((1,), -2.19)}}, path)
  monkeypatch.setitem(sys.modules, "torch", None)  # any `import torch` now fails
  np.testing.assert_array_equal(pytorch.read_state_dict(path)["model.hm.3.bias"], np.float32([-2.19]))
  importers = []
  for source in PACKAGE.rglob("*.py"):
    if "testing" in source.relative_to(PACKAGE).parts:
      continue  # the tests' and benchmarks' helpers (a PyTorch reference network), never imported by the library
    for node in ast.walk(ast.parse(source.read_text())):
      names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
          [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      if any(name == "torch" or name.startswith("torch.") for name in names):
        importers.append(str(source.relative_to(PACKAGE)))
  assert not importers
