"""Helpers shared by test modules in different folders (`from helpers import ...`). Those the benchmarks use
too live in `centerpose_jax.testing`."""

import pathlib
import struct

import numpy as np
from tensorboardX.proto import event_pb2

from centerpose_jax.data import transforms
from centerpose_jax.testing.variables import save_checkpoint  # noqa: F401  (re-exported for the tests)


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
