"""Training checkpoints (Orbax `CheckpointManager`), weight loading for every task, and fingerprints.

A training run writes its checkpoints to `train_dir(config)` (`results_dir/train/` unless
`train.results_dir` is set), one folder per checkpoint, named by the training step (batches consumed):

  <train_dir>/<step>/state/   the `TrainState` pytree (params, batch_stats, opt_state, step, rng, loss-scale
                              state, skipped_steps), Orbax StandardSave
  <train_dir>/<step>/meta/    JSON: epoch (epochs completed), step, data_iterator (the loader's state),
                              precision, batches_per_epoch

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a checkpoint whose save
was interrupted (process killed) is never listed and the previous one is used.

`load_variables(path)` gives {"params", "batch_stats"} from any of: a training results folder, a checkpoint
folder (its latest checkpoint), one checkpoint's step folder, or a converted TAO checkpoint (a folder whose
`variables/` sub-folder, or the folder itself, is a StandardCheckpointer pytree of {params, batch_stats}).
"""

import hashlib
import pathlib
from typing import Any, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

TRAIN_SUBDIR = "train"
STATE_ITEM = "state"
META_ITEM = "meta"
VARIABLES_SUBDIR = "variables"  # tools/convert_checkpoint.py's output: DIR/variables
_PYTREE_MARKER = "_METADATA"  # present in every Orbax pytree checkpoint folder


def train_dir(config) -> pathlib.Path:
  """Where training writes checkpoints, TensorBoard events and status.json: `train.results_dir`, else
  `results_dir/train`."""
  if config.train.get("results_dir"):
    return pathlib.Path(config.train.results_dir)
  return pathlib.Path(config.results_dir) / TRAIN_SUBDIR


class CheckpointManager:
  """Saves and restores training checkpoints in one folder (see the module docstring).

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: keep the newest N checkpoints; 0 or None keeps all (TAO's default).
    asynchronous: write in a background thread after the arrays have been copied to the host (the state can
      be donated to the next step as soon as `save` returns); `wait` blocks until the write is complete.
  """

  def __init__(self, directory, max_to_keep: Optional[int] = None, asynchronous: bool = True):
    self.directory = pathlib.Path(directory).absolute()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep or None, create=True,
                                           enable_async_checkpointing=asynchronous)
    self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=(STATE_ITEM, META_ITEM))

  def latest_step(self) -> Optional[int]:
    """Step of the newest complete checkpoint, or None."""
    return self._manager.latest_step()

  def all_steps(self):
    """Steps of every complete checkpoint, ascending."""
    return sorted(self._manager.all_steps())

  def save(self, state, meta: dict) -> None:
    """Writes `state` (a TrainState) and the JSON-able `meta` dict as checkpoint `int(state.step)`."""
    step = int(np.asarray(state.step.addressable_data(0)))
    self._manager.save(step, args=ocp.args.Composite(**{STATE_ITEM: ocp.args.StandardSave(state),
                                                        META_ITEM: ocp.args.JsonSave(dict(meta, step=step))}),
                       force=True)

  def restore(self, abstract_state, step: Optional[int] = None) -> Tuple[Any, dict]:
    """(state, meta) of checkpoint `step` (default: the latest).

    Args:
      abstract_state: a TrainState of `jax.ShapeDtypeStruct`s (with shardings) giving the structure, dtypes
        and placement of the restored arrays, e.g. `jax.eval_shape` of the state constructor.
      step: which checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"{self.directory}: no complete checkpoint")
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        STATE_ITEM: ocp.args.StandardRestore(abstract_state), META_ITEM: ocp.args.JsonRestore()}))
    return restored[STATE_ITEM], restored[META_ITEM]

  def wait(self) -> None:
    """Blocks until every started save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _is_pytree_checkpoint(path: pathlib.Path) -> bool:
  return (path / _PYTREE_MARKER).is_file()


def _is_step_folder(path: pathlib.Path) -> bool:
  return path.is_dir() and path.name.isdigit() and (path / STATE_ITEM).is_dir()


def find_checkpoint(path) -> pathlib.Path:
  """The step folder of the checkpoint that `path` names: a step folder itself, the latest complete one of
  a checkpoint folder, or of a results folder's `train/`.

  Raises:
    FileNotFoundError: when `path` holds no complete checkpoint.
  """
  path = pathlib.Path(path)
  if _is_step_folder(path):
    return path
  for folder in (path, path / TRAIN_SUBDIR):
    if folder.is_dir():
      steps = [int(p.name) for p in folder.iterdir() if _is_step_folder(p)]
      if steps:
        return folder / str(max(steps))
  raise FileNotFoundError(f"{path}: no training checkpoint (a <step>/{STATE_ITEM} folder) in it or in its "
                          f"{TRAIN_SUBDIR}/ folder")


def _variables_tree(path: pathlib.Path) -> pathlib.Path:
  """The pytree folder `load_variables` reads: a converted checkpoint's, else a training checkpoint's state."""
  for candidate in (path / VARIABLES_SUBDIR, path):
    if _is_pytree_checkpoint(candidate):
      return candidate
  return find_checkpoint(path) / STATE_ITEM


def load_variables(path, encryption_key: Optional[str] = None) -> dict:
  """{"params", "batch_stats"} (host numpy arrays) from a checkpoint; see the module docstring for `path`.

  Args:
    path: results folder, checkpoint folder, step folder, or converted-checkpoint folder.
    encryption_key: `encryption_key` of the config; encrypted checkpoints are not supported yet, so it must
      be unset.

  Raises:
    FileNotFoundError: when no checkpoint is found at `path`.
    NotImplementedError: when an encryption key is given.
  """
  if encryption_key:
    raise NotImplementedError("encryption_key is set, but encrypted checkpoints are not supported; unset it")
  tree_path = _variables_tree(pathlib.Path(path))
  restored = ocp.StandardCheckpointer().restore(tree_path.absolute())
  restored = jax.tree_util.tree_map(np.asarray, restored)
  return {"params": restored["params"], "batch_stats": restored.get("batch_stats", {})}


def read_meta(step_folder) -> dict:
  """The JSON meta of one checkpoint step folder (epoch, step, data_iterator, ...)."""
  return ocp.JsonCheckpointHandler().restore(pathlib.Path(step_folder).absolute() / META_ITEM)


def fingerprint(variables: dict) -> str:
  """SHA-256 (hex) of every array of `variables` ({"params", "batch_stats"}): each leaf's tree path, dtype,
  shape and bytes, in sorted path order. Equal fingerprints mean bit-identical weights."""
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path({"params": variables["params"],
                                                 "batch_stats": variables.get("batch_stats", {})})[0]
  for key, leaf in sorted((jax.tree_util.keystr(path), leaf) for path, leaf in leaves):
    array = np.ascontiguousarray(jax.device_get(leaf))
    digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def resume_source(config, directory=None) -> Optional[Tuple[pathlib.Path, int]]:
  """(checkpoint folder, step) a training run continues from, or None for a fresh start.

  `train.resume_training_checkpoint_path` (a step folder, or a checkpoint/results folder: its latest)
  wins; otherwise the latest complete checkpoint in `directory` (default `train_dir(config)`), if any.
  """
  explicit = config.train.get("resume_training_checkpoint_path")
  if explicit:
    step_folder = find_checkpoint(explicit)
  else:
    try:
      step_folder = find_checkpoint(directory or train_dir(config))
    except FileNotFoundError:
      return None
  return step_folder.parent, int(step_folder.name)

