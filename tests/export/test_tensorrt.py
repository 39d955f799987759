"""tools/gen_trt_engine.py: the trtexec command built from the `gen_trt_engine` section, and running it."""

import os
import pathlib
import stat
import subprocess
import sys

import onnx
import pytest
from onnx import helper

from centerpose_jax import config as config_lib
from centerpose_jax import config_validation
from centerpose_jax.export import tensorrt
from configs import default

REPO = pathlib.Path(__file__).resolve().parents[2]


def _write_onnx(path, batch="batch_size", height=384, width=256):
  """A stand-in for an exported model: input `input` [batch, 3, H, W] (batch a name = dynamic)."""
  tensor = helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, [batch, 3, height, width])
  output = helper.make_tensor_value_info("scores", onnx.TensorProto.FLOAT, [batch, 3, height, width])
  graph = helper.make_graph([helper.make_node("Identity", ["input"], ["scores"])], "g", [tensor], [output])
  onnx.save(helper.make_model(graph), path)
  return path


def _config(tmp_path, **engine):
  config = default.get_config()
  config.results_dir = str(tmp_path / "results")
  config.gen_trt_engine.input_height, config.gen_trt_engine.input_width = 384, 256
  for dotted, value in engine.items():
    *parents, leaf = dotted.split("__")
    node = config.gen_trt_engine
    for part in parents:
      node = node[part]
    node[leaf] = value
  return config


def test_the_command_maps_every_option(tmp_path):
  onnx_file = _write_onnx(tmp_path / "centerpose.onnx")
  cache = tmp_path / "cal.bin"
  cache.write_bytes(b"calibration")
  config = _config(tmp_path, onnx_file=str(onnx_file), trt_engine=str(tmp_path / "model.engine"), gpu_id=1,
                   timing_cache=str(tmp_path / "timing.cache"), verbose=True, tensorrt__data_type="INT8",
                   tensorrt__workspace_size=2048, tensorrt__min_batch_size=1, tensorrt__opt_batch_size=4,
                   tensorrt__max_batch_size=8, tensorrt__calibration__cal_cache_file=str(cache))
  assert config_validation.collect_problems(config, "gen_trt_engine") == []
  assert tensorrt.trtexec_command(config) == [
      "trtexec", f"--onnx={onnx_file}", f"--saveEngine={tmp_path / 'model.engine'}", "--device=1",
      "--memPoolSize=workspace:2048", "--minShapes=input:1x3x384x256", "--optShapes=input:4x3x384x256",
      "--maxShapes=input:8x3x384x256", "--int8", f"--calib={cache}", f"--timingCacheFile={tmp_path / 'timing.cache'}",
      "--verbose"]


def test_defaults_chain_from_export_and_fixed_batches(tmp_path):
  config = _config(tmp_path, tensorrt__data_type="FP16", batch_size=2)
  exported = config_lib.export_onnx_file(config)
  assert exported == tmp_path / "results" / "export" / "centerpose.onnx"  # export.py's default output
  exported.parent.mkdir(parents=True)
  _write_onnx(exported)
  assert tensorrt.trtexec_command(config) == [
      "trtexec", f"--onnx={exported}", f"--saveEngine={tmp_path / 'results' / 'gen_trt_engine' / 'centerpose.engine'}",
      "--device=0", "--memPoolSize=workspace:1024", "--minShapes=input:2x3x384x256", "--optShapes=input:2x3x384x256",
      "--maxShapes=input:2x3x384x256", "--fp16"]
  _write_onnx(exported, batch=1)  # a static batch: no shapes to give, and a different batch_size is an error
  config.gen_trt_engine.batch_size = -1
  assert not any(arg.startswith("--minShapes") for arg in tensorrt.trtexec_command(config))
  config.gen_trt_engine.batch_size = 4
  with pytest.raises(tensorrt.EngineError, match="static batch of 1"):
    tensorrt.trtexec_command(config)


def test_settings_that_do_not_fit_are_reported(tmp_path):
  config = _config(tmp_path, tensorrt__data_type="INT8", tensorrt__min_batch_size=4, tensorrt__opt_batch_size=2,
                   batch_size=0)
  problems = config_validation.collect_problems(config, "gen_trt_engine")
  assert any(p.startswith("gen_trt_engine.tensorrt.calibration.cal_cache_file: INT8 calibration cache")
             for p in problems)
  assert any("min_batch_size <= opt_batch_size" in p for p in problems)
  assert any(p.startswith("gen_trt_engine.batch_size: got 0") for p in problems)
  config = _config(tmp_path, onnx_file=str(tmp_path / "absent.onnx"))
  with pytest.raises(tensorrt.EngineError, match="run export.py first"):
    tensorrt.trtexec_command(config)
  config = _config(tmp_path, onnx_file=str(_write_onnx(tmp_path / "m.onnx", height=512)))
  with pytest.raises(tensorrt.EngineError, match="input_height=384 but the ONNX takes 512"):
    tensorrt.trtexec_command(config)


def test_it_runs_trtexec_when_on_path_and_prints_the_command_otherwise(tmp_path, monkeypatch, capsys):
  onnx_file = _write_onnx(tmp_path / "centerpose.onnx")
  config = _config(tmp_path, onnx_file=str(onnx_file))
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  assert tensorrt.build_engine(config)["ran"] is False
  printed = capsys.readouterr().out
  assert "trtexec is not on PATH" in printed and " ".join(tensorrt.trtexec_command(config)) in printed

  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  fake = bin_dir / "trtexec"  # records its arguments and writes the engine file
  fake.write_text(f"#!{sys.executable}\nimport sys, pathlib\n"
                  f"pathlib.Path({str(tmp_path / 'args.txt')!r}).write_text('\\n'.join(sys.argv[1:]))\n"
                  "engine = [a for a in sys.argv if a.startswith('--saveEngine=')][0].split('=', 1)[1]\n"
                  "pathlib.Path(engine).write_bytes(b'engine')\n")
  fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
  monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ["PATH"])
  result = tensorrt.build_engine(config)
  assert result["ran"] is True
  assert (tmp_path / "args.txt").read_text().splitlines() == tensorrt.trtexec_command(config)[1:]
  assert (tmp_path / "results" / "gen_trt_engine" / "centerpose.engine").read_bytes() == b"engine"
  fake.write_text("#!/bin/sh\nexit 3\n")
  with pytest.raises(tensorrt.EngineError, match="exit status 3"):
    tensorrt.build_engine(config)


def test_the_tool_takes_the_config_like_the_entry_points(tmp_path):
  onnx_file = _write_onnx(tmp_path / "centerpose.onnx")
  environment = dict(os.environ, PATH=str(tmp_path / "empty"))  # no trtexec: the command is printed
  result = subprocess.run(
      [sys.executable, str(REPO / "tools" / "gen_trt_engine.py"), f"--config={REPO / 'configs' / 'default.py'}",
       f"--config.gen_trt_engine.onnx_file={onnx_file}", "--config.gen_trt_engine.input_height=384",
       "--config.gen_trt_engine.input_width=256", "--config.gen_trt_engine.tensorrt.data_type=FP16",
       f"--config.results_dir={tmp_path}"],
      capture_output=True, text=True, env=environment, cwd=REPO, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f"trtexec --onnx={onnx_file} --saveEngine={tmp_path / 'gen_trt_engine' / 'centerpose.engine'}" in result.stdout
  assert "--fp16" in result.stdout
  bad = subprocess.run(
      [sys.executable, str(REPO / "tools" / "gen_trt_engine.py"), "--config.gen_trt_engine.tensorrt.data_type=INT4"],
      capture_output=True, text=True, env=environment, cwd=REPO, timeout=120, check=False)
  assert bad.returncode == 2 and "gen_trt_engine.tensorrt.data_type: got 'INT4'" in bad.stderr
