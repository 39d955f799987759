"""Small stand-ins for the training tests: numpy variables, random valid batches and a minute-run config.

The tiny model itself is the package's test network (`centerpose_jax.models.tiny.TinyCenterPose`, selected in a
config by `model.backbone.model_type = models.registry.TINY`).
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from centerpose_jax.models import heads

HEAD_CHANNELS = tuple(heads.HEADS.items())
NUM_JOINTS = 8


def numpy_variables(model, input_shape, seed: int = 0) -> dict:
  """{"params", "batch_stats"} for `model` drawn with numpy (shapes from `jax.eval_shape`; no compile).

  Kernels ~ N(0, 0.1), biases 0 (-2.19 for the heatmap heads), BatchNorm scale 1, mean 0, variance 1.
  """
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(input_shape, jnp.float32)))

  def fill(path, leaf):
    names = [getattr(p, "key", "") for p in path]
    if names[-1] == "kernel":
      return (0.1 * rng.normal(size=leaf.shape)).astype(np.float32)
    if names[-1] in ("scale", "var"):
      return np.ones(leaf.shape, np.float32)
    if names[-1] == "bias" and names[-2].startswith("hm"):
      return np.full(leaf.shape, -2.19, np.float32)
    return np.zeros(leaf.shape, np.float32)

  variables = jax.tree_util.tree_map_with_path(fill, shapes)
  return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}


def random_batch(rng: np.random.Generator, batch: int, symmetry: int, size: int, max_objs: int = 4,
                 invalid_copies=()) -> dict:
  """A random batch in the loader's layout for `size` x `size` inputs (output grid size / 4).

  Heatmaps have exact 1.0 peaks at the objects' centres / keypoints; masks are random; `invalid_copies`
  lists (sample, copy) pairs whose objects all get `ind` == 0 (no object), as the loader does for padding.
  """
  grid = size // 4
  cells = grid * grid
  shape = (batch, symmetry)
  ind = rng.integers(1, cells, shape + (max_objs,)).astype(np.int32)
  reg_mask = (rng.random(shape + (max_objs,)) < 0.7).astype(np.float32)
  reg_mask[..., 0] = 1.0
  hp_ind = rng.integers(0, cells, shape + (max_objs * NUM_JOINTS,)).astype(np.int32)
  hp_mask = (rng.random(shape + (max_objs * NUM_JOINTS,)) < 0.6).astype(np.float32)
  hm = rng.random(shape + (grid, grid, 1)).astype(np.float32) * 0.9
  hm_hp = rng.random(shape + (grid, grid, NUM_JOINTS)).astype(np.float32) * 0.9
  for b in range(batch):
    for s in range(symmetry):
      for m in np.flatnonzero(reg_mask[b, s]):
        hm[b, s].reshape(cells, 1)[ind[b, s, m], 0] = 1.0
      for k in np.flatnonzero(hp_mask[b, s]):
        hm_hp[b, s].reshape(cells, NUM_JOINTS)[hp_ind[b, s, k], k % NUM_JOINTS] = 1.0
  for b, s in invalid_copies:
    ind[b, s] = 0
    reg_mask[b, s] = 0.0
  return {
      "input": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
      "hm": hm,
      "hm_hp": hm_hp,
      "wh": rng.uniform(1, 20, shape + (max_objs, 2)).astype(np.float32),
      "reg": rng.random(shape + (max_objs, 2)).astype(np.float32),
      "scale": rng.uniform(0.3, 2.0, shape + (max_objs, 3)).astype(np.float32),
      "hps": rng.integers(-8, 8, shape + (max_objs, 2 * NUM_JOINTS)).astype(np.float32),
      "hps_mask": (rng.random(shape + (max_objs, 2 * NUM_JOINTS)) < 0.8).astype(np.float32),
      "ind": ind,
      "reg_mask": reg_mask,
      "hp_offset": rng.random(shape + (max_objs * NUM_JOINTS, 2)).astype(np.float32),
      "hp_ind": hp_ind,
      "hp_mask": hp_mask,
      "sample_weight": np.ones((batch,), np.float32),
  }


def tiny_config(data_dir, results_dir, **train_overrides):
  """A whole config for minute loop runs on `data_dir/{train,val}` (64 px, batch 2, slim DLA34, no workers).

  `train_overrides` set `config.train.<name>`.
  """
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  config.results_dir = str(results_dir)
  config.dataset.train_data = str(pathlib.Path(data_dir) / "train")
  config.dataset.val_data = str(pathlib.Path(data_dir) / "val")
  config.dataset.input_res = 64
  config.dataset.output_res = 16
  config.dataset.batch_size = 2
  config.dataset.workers = 0
  config.inference.num_select = 20
  config.model.backbone.model_type = "DLA34"
  config.model.backbone.width_multiplier = 0.125
  config.model.head_conv = 32
  config.train.num_epochs = 2
  config.train.optim.lr = 1e-3
  config.train.seed = 0
  for name, value in train_overrides.items():
    config.train[name] = value
  return config
