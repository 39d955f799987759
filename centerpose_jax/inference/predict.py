"""The one predict function: the network in inference mode, then the decoder, as one computation.

`predict` is the body of the exported ONNX graph (`tasks/export.py` traces it) and, jitted over a device mesh
by `make_predict_fn` (parameters replicated, the batch sharded along "data", the outputs replicated so that
every process can read all of them), what training's validation, evaluate.py and infer.py run (through
`predictor.JaxPredictor`).
"""

import functools
from typing import Callable, Dict

import jax
from jax.sharding import Mesh

from centerpose_jax import mesh as mesh_lib
from centerpose_jax.inference.decode import decode

Decoded = Dict[str, jax.Array]
PredictFn = Callable[[dict, jax.Array], Decoded]


def predict(model, variables, inputs: jax.Array, *, num_select: int) -> Decoded:
  """`decode`'s seven outputs (output-grid units) of `model` in inference mode.

  Args:
    model: a CenterPose-like linen module (`models.create_model`).
    variables: its {"params", "batch_stats"}.
    inputs: [B, H, W, 3] float32, normalised BGR (NHWC).
    num_select: K, the detections kept per image.
  """
  return decode(model.apply(variables, inputs, train=False), num_select=num_select)


def predict_fn(model, num_select: int) -> PredictFn:
  """`predict` of `model` as a function of (variables, inputs), unjitted (the export traces it)."""
  return functools.partial(predict, model, num_select=num_select)


def make_predict_fn(model, mesh: Mesh, num_select: int) -> PredictFn:
  """`predict` jitted over `mesh`: call with (variables replicated on the mesh, inputs [B, H, W, 3] sharded along
  "data", B a multiple of the mesh size); returns the decoded batch replicated on every device."""
  replicated = mesh_lib.replicated_sharding(mesh)
  return jax.jit(predict_fn(model, num_select), in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                 out_shardings=replicated)
