"""Issue 15, item 6: a user's mistake gives one message without a traceback and exit status 1 or 2; with
`--verbosity=1` the traceback is shown. Each case runs the real entry point in a subprocess."""

import os
import pathlib
import subprocess
import sys

import cv2
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
INTRINSICS = ["--config.inference.focal_length_x=600", "--config.inference.focal_length_y=600",
              "--config.inference.principle_point_x=300", "--config.inference.principle_point_y=400"]


def _run(script, *args):
  return subprocess.run([sys.executable, *([str(REPO / script)] if script else []), *args], capture_output=True,
                        text=True, cwd=REPO, timeout=300, check=False, env=dict(os.environ, JAX_PLATFORMS="cpu"))


def _message_lines(result):
  """stderr without absl's and OpenCV's log lines."""
  return [line for line in result.stderr.splitlines()
          if line.strip() and not line.startswith(("W1", "I1", "E1", "[ WARN", "WARNING:"))]


def test_unknown_config_field_names_its_section_and_close_matches():
  result = _run("train.py", "--config.train.num_epoch=3")
  assert result.returncode == 2 and TRACEBACK not in result.stderr
  assert _message_lines(result) == [
      "train.py: invalid configuration:",
      "  - train.num_epoch: unknown field of section train; did you mean train.num_epochs?"]
  result = _run("evaluate.py", "--config=configs/bike.py", "--config.model.backbone.typ=DLA34")
  assert result.returncode == 2 and TRACEBACK not in result.stderr
  assert _message_lines(result)[-1] == ("  - model.backbone.typ: unknown field of section model.backbone; its fields: "
                                        "model_type, pretrained_backbone_path, width_multiplier")
  result = _run("infer.py", "--config=configs/missing.py")
  assert result.returncode == 2 and TRACEBACK not in result.stderr
  assert "'configs/missing.py' is not a file" in result.stderr


def test_bad_inputs_of_infer_give_one_line_and_verbosity_shows_the_traceback(tmp_path):
  checkpoint = tmp_path / "checkpoint"  # never read: the inputs are checked before the weights are loaded
  checkpoint.mkdir()
  empty = tmp_path / "empty"
  empty.mkdir()
  video = tmp_path / "corrupt.mp4"
  video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
  images = tmp_path / "images"
  images.mkdir()
  cv2.imwrite(str(images / "frame.png"), np.zeros((64, 64, 3), np.uint8))
  common = ["--config=configs/bike.py", f"--config.inference.checkpoint={checkpoint}",
            f"--config.results_dir={tmp_path / 'results'}"]
  cases = {
      "missing": (["--config.dataset.inference_data=/no/such/folder", *INTRINSICS], 2,
                  "dataset.inference_data: '/no/such/folder' does not exist"),
      "empty": ([f"--config.dataset.inference_data={empty}", *INTRINSICS], 1,
                f"infer.py: error: dataset.inference_data: no images (.jpg, .jpeg, .png, .bmp) in {empty}"),
      "video": ([f"--config.dataset.inference_data={video}", *INTRINSICS], 1,
                f"infer.py: error: {video}: cannot open the video"),
      "intrinsics": ([f"--config.dataset.inference_data={images}", "--config.inference.focal_length_x=0"], 1,
                     "infer.py: error: camera intrinsics are not set: inference.focal_length_x"),
  }
  for name, (args, status, message) in cases.items():
    result = _run("infer.py", *common, *args)
    assert result.returncode == status, (name, result.stderr[-2000:])
    assert TRACEBACK not in result.stderr, (name, result.stderr[-2000:])
    assert any(line.startswith(message) or line.strip().startswith(f"- {message}")
               for line in _message_lines(result)), (name, result.stderr[-2000:])
  verbose = _run("infer.py", *common, f"--config.dataset.inference_data={empty}", *INTRINSICS, "--verbosity=1")
  assert verbose.returncode == 1 and TRACEBACK in verbose.stderr and "InputNotFoundError" in verbose.stderr
  assert verbose.stderr.rstrip().splitlines()[-1].startswith("infer.py: error: dataset.inference_data: no images")


# The child limits its own address space to 6 GiB before importing jax: the 12 GiB allocation then fails with
# XLA's RESOURCE_EXHAUSTED, as a too-large batch does on an accelerator.
_OUT_OF_MEMORY = """
import resource
resource.setrlimit(resource.RLIMIT_AS, (6 * 2**30, 6 * 2**30))
import jax, jax.numpy as jnp
from centerpose_jax import cli
flag = cli.define_config_flag()
def main(config):
  jax.block_until_ready(jax.jit(lambda: jnp.ones((3 * 2**30,), jnp.float32))())  # 12 GiB
cli.run(main, "train", flag)
"""


def test_out_of_memory_says_what_to_lower(tmp_path):
  result = _run(None, "-c", _OUT_OF_MEMORY, f"--config.dataset.train_data={tmp_path}",
                "--config.dataset.batch_size=64")
  assert result.returncode == 1 and TRACEBACK not in result.stderr, result.stderr[-2000:]
  message = _message_lines(result)[-1]
  assert message.startswith("-c: error: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 12884901888 "
                            "bytes"), message
  assert message.endswith("lower dataset.batch_size (now 64 per device) or dataset.input_res (now 512); keep the "
                          "global batch with train.grad_accumulation_steps, or use train.precision=bf16"), message
