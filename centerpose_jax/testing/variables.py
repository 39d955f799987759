"""Model variables for tests and benchmarks: random ones at a trained net's scale, saved as a checkpoint."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from centerpose_jax import checkpoint as checkpoint_lib


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
