"""Helpers shared by test modules in different folders (`from helpers import ...`; bench scripts import
`tests.helpers`)."""

import pathlib
import struct

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tensorboardX.proto import event_pb2

from centerpose_jax.data import transforms
from centerpose_jax.training import checkpoint as checkpoint_lib


def random_variables(model, input_shape, seed: int = 0) -> dict:
  """Weights at the scale of a trained net: kernels ~ N(0, 1 / fan_in), norm scales ~ 1, running var ~ 1.

  Unlike a fresh `model.init` (heatmap bias -2.19: centre scores about 0.1), such a net gives confident
  random detections (centre scores up to about 0.9), so decoding, post-processing and exports see real ones.

  Args:
    model: a Flax module taking (x [B, H, W, 3], train=False).
    input_shape: (height, width) in pixels of the input the shapes are traced with.
    seed: numpy seed of the values.

  Returns:
    {"params", "batch_stats"} of float32 numpy arrays (shapes from `jax.eval_shape`, no initialisation run).
  """
  height, width = input_shape
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, height, width, 3)), train=False))
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if leaf.ndim > 1:
      return (rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
    base = 1.0 if ("scale" in name or "var" in name) else 0.0
    return (base + rng.uniform(-0.2, 0.2, leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def save_checkpoint(folder, variables) -> pathlib.Path:
  """Saves `variables` as a converted-checkpoint folder (`folder/variables`, Orbax) and returns `folder`,
  a path the `checkpoint` options and `checkpoint.load_variables` accept."""
  folder = pathlib.Path(folder).absolute()
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(folder / checkpoint_lib.VARIABLES_SUBDIR, variables)
  checkpointer.wait_until_finished()
  return folder


def oracle_decoded(batch, output_res, num_select=100):
  """Decoder outputs that put every ground-truth object at its labelled place with score 0.9.

  `batch` is one of `loader.iterate_eval_batches`; the result has the decoder's keys ([B, num_select, C] float32,
  output-grid units), so `evaluation.run.score_batch` scores the labels against themselves.
  """
  size = len(batch["image_path"])
  decoded = {"bboxes": np.zeros((size, num_select, 4), np.float32),
             "scores": np.zeros((size, num_select, 1), np.float32),
             "obj_scale": np.ones((size, num_select, 3), np.float32),
             "kps_displacement_mean": np.zeros((size, num_select, 16), np.float32)}
  for i, annotation in enumerate(batch["annotation"]):
    if annotation is None:
      continue
    to_grid = transforms.affine_transform_matrix(batch["center"][i], float(batch["crop_scale"][i]), 0.0,
                                                 (output_res, output_res))
    for k, obj in enumerate(annotation["objects"]):
      corners = transforms.apply_affine(np.asarray(obj["projected_cuboid"], np.float64)[1:], to_grid)
      decoded["bboxes"][i, k] = np.concatenate([corners.min(0), corners.max(0)])
      decoded["scores"][i, k] = 0.9
      decoded["obj_scale"][i, k] = np.asarray(obj["scale"]) / obj["scale"][1]
      decoded["kps_displacement_mean"][i, k] = corners.reshape(-1)
  decoded["kps_heatmap_mean"] = decoded["kps_displacement_mean"].copy()
  return decoded


def tensorboard_scalars(folder):
  """{tag: [(step, value)]} of the scalars in the TFRecord event files under `folder`."""
  scalars = {}
  for path in sorted(pathlib.Path(folder).rglob("events.*")):
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack_from("<Q", data, offset)
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 16 + length
      for value in event.summary.value:
        scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars
