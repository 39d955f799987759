"""Training checkpoints (Orbax `CheckpointManager`), weight loading for every task, and fingerprints.

A training run writes its checkpoints to `train_dir(config)` (`results_dir/train/` unless
`train.results_dir` is set), one folder per checkpoint, named by the training step (batches consumed):

  <train_dir>/<step>/state/   the `TrainState` pytree (params, batch_stats, opt_state, step, rng, loss-scale
                              state, skipped_steps), Orbax StandardSave
  <train_dir>/<step>/meta/    JSON: epoch (epochs completed), step, data_iterator (the loader's state),
                              seed, precision, batches_per_epoch, model (the architecture)

Orbax writes each checkpoint to a temporary folder and renames it when complete, so a checkpoint whose save
was interrupted (process killed) is never listed and the previous one is used. A listed checkpoint that
cannot be read (a file damaged later) raises `DamagedCheckpointError` naming its step and the reason; a
resuming run then goes back to the newest readable one and moves the damaged folder to `<step>.damaged`
(kept, never deleted; Orbax no longer lists it, so the step can be written again).

The meta also records the network's architecture (`model`: `models.architecture.architecture(config)`), so
weights that do not fit the configured model are reported with both architectures named.

Arrays are restored onto the devices of the run that reads them, whatever the device count or process count
of the run that wrote them: resuming restores into the new run's sharding, and `load_variables` restores
every array whole onto this process's first local device.

With the config's `encryption_key`, every file of a checkpoint except Orbax's bookkeeping
`<step>/_CHECKPOINT_METADATA` (item handler names and timestamps, which Orbax reads to list checkpoints) is
encrypted (`centerpose_jax.encryption`) in the temporary folder, before the rename: a listed checkpoint is
never in plaintext. A save interrupted before that leaves plaintext in its temporary folder, which the next
`CheckpointManager` with the key deletes. Reading decrypts into a temporary folder that is removed
afterwards; plain files (e.g. a converted checkpoint) are read as they are, so a key may be set for
unencrypted checkpoints.

`load_variables(path)` gives {"params", "batch_stats"} from any of: a training results folder, a checkpoint
folder (its latest checkpoint), one checkpoint's step folder, a converted TAO checkpoint (a folder whose
`variables/` sub-folder, or the folder itself, is a StandardCheckpointer pytree of {params, batch_stats}), or
a weights file converted on the fly: a TAO Lightning `.pth`, a plain PyTorch state_dict `.pth` or an `.npz`
(read without torch and without running code from the file; see `convert.pth_reader`).
"""

import asyncio
import contextlib
import hashlib
import logging
import pathlib
import tempfile
from typing import Any, Iterator, List, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp

from centerpose_jax import config as config_lib
from centerpose_jax import encryption
from centerpose_jax import errors
from centerpose_jax.models import architecture as architecture_lib
from centerpose_jax.convert import pth_reader
from centerpose_jax.convert import pytorch

TRAIN_SUBDIR = "train"
STATE_ITEM = "state"
META_ITEM = "meta"
VARIABLES_SUBDIR = "variables"  # tools/convert_checkpoint.py's output: DIR/variables
_PYTREE_MARKER = "_METADATA"  # present in every Orbax pytree checkpoint folder
_STEP_BOOKKEEPING = "_CHECKPOINT_METADATA"  # Orbax's per-step metadata: left plain (see the module docstring)
DAMAGED_SUFFIX = ".damaged"  # a damaged step folder set aside by a resuming run: <step>.damaged
_REASON_CHARS = 300
# Errors that are the same for every checkpoint of a folder, so going back to an older one cannot help.
_NOT_DAMAGE = (encryption.WrongKeyError, encryption.MissingKeyError, architecture_lib.ArchitectureMismatchError)


class CheckpointNotFoundError(errors.InputNotFoundError):
  """A path that holds no (complete) checkpoint."""


class DamagedCheckpointError(errors.CenterPoseError):
  """A listed checkpoint whose files cannot be read (truncated, corrupted, missing pieces).

  Attributes:
    step_folder: the checkpoint's step folder.
    step: its step.
    reason: one line: the error that reading it gave.

  Without a step (`step_folder` a checkpoint folder) it says that no checkpoint of the folder can be read.
  """

  def __init__(self, step_folder, error):
    self.step_folder = pathlib.Path(step_folder)
    self.step = int(self.step_folder.name) if self.step_folder.name.isdigit() else None
    if isinstance(error, BaseException):
      while error.__cause__ is not None:  # the innermost error says what is wrong (TensorStore's: which byte range)
        error = error.__cause__
      text = " ".join(str(error).split())
      error = f"{type(error).__name__}: {text[:_REASON_CHARS]}{'...' if len(text) > _REASON_CHARS else ''}"
    self.reason = error
    what = f"the checkpoint of step {self.step} cannot be read" if self.step is not None else "no checkpoint"
    super().__init__(f"{self.step_folder}: {what} ({self.reason})")


def train_dir(config) -> pathlib.Path:
  """Where training writes checkpoints, TensorBoard events and status.json: `train.results_dir`, else
  `results_dir/train`."""
  return config_lib.task_results_dir(config, TRAIN_SUBDIR)


def _encrypt_tree(folder: pathlib.Path, key: encryption.Key) -> None:
  """Encrypts every file under `folder` in place (each one replaced atomically), except `_STEP_BOOKKEEPING`."""
  for path in sorted(folder.rglob("*")):
    if path.is_file() and path.name != _STEP_BOOKKEEPING:
      encryption.encrypt_file(path, path, key)


@contextlib.contextmanager
def _plaintext(folder: pathlib.Path, key: Optional[encryption.Key]) -> Iterator[pathlib.Path]:
  """`folder` itself when none of its files is encrypted, else a decrypted copy in a temporary folder that
  is removed on exit.

  Raises:
    encryption.WrongKeyError: a file was encrypted with another key.
    encryption.EncryptionError: a file is encrypted and `key` is unset, or is damaged (the message names it).
  """
  paths = sorted(folder.rglob("*"))
  if not any(path.is_file() and encryption.is_encrypted_file(path) for path in paths):
    yield folder
    return
  with tempfile.TemporaryDirectory(prefix="centerpose_checkpoint_") as temporary:
    copy = pathlib.Path(temporary) / folder.name
    copy.mkdir()
    for path in paths:
      target = copy / path.relative_to(folder)
      if path.is_dir():
        target.mkdir(exist_ok=True)
      else:
        encryption.write_file(target, encryption.read_file(path, key))
    yield copy


def _encrypting_temporary_path(key: encryption.Key):
  """An Orbax TemporaryPath class that encrypts a checkpoint's temporary folder just before its final rename."""

  class EncryptingTemporaryPath(ocp.path.atomicity.AtomicRenameTemporaryPath):

    async def finalize(self, *args, **kwargs):
      await asyncio.to_thread(_encrypt_tree, pathlib.Path(self.get()), key)
      await super().finalize(*args, **kwargs)

  return EncryptingTemporaryPath


class CheckpointManager:
  """Saves and restores training checkpoints in one folder (see the module docstring).

  Args:
    directory: the checkpoint folder (created if missing).
    max_to_keep: keep the newest N checkpoints; 0 or None keeps all (TAO's default).
    asynchronous: write in a background thread after the arrays have been copied to the host (the state can
      be donated to the next step as soon as `save` returns); `wait` blocks until the write (and encryption)
      is complete.
    encryption_key: the config's `encryption_key`: when set, saved checkpoints are encrypted, encrypted ones
      are decrypted with it, and the temporary folders of interrupted saves are deleted.
  """

  def __init__(self, directory, max_to_keep: Optional[int] = None, asynchronous: bool = True,
               encryption_key: Optional[encryption.Key] = None):
    self.directory = pathlib.Path(directory).absolute()
    self._encryption_key = encryption_key or None
    encrypted = self._encryption_key is not None
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep or None, create=True, enable_async_checkpointing=asynchronous,
        temporary_path_class=_encrypting_temporary_path(self._encryption_key) if encrypted else None,
        cleanup_tmp_directories=encrypted)
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

  def restore(self, abstract_state, step: Optional[int] = None,
              configured: Optional[dict] = None) -> Tuple[Any, dict]:
    """(state, meta) of checkpoint `step` (default: the latest).

    Args:
      abstract_state: a TrainState of `jax.ShapeDtypeStruct`s (with shardings) giving the structure, dtypes
        and placement of the restored arrays, e.g. `jax.eval_shape` of the state constructor. The checkpoint
        may have been written with any other device or process count.
      step: which checkpoint.
      configured: the configured architecture (`architecture.architecture(config)`), named by the error when
        the checkpoint's weights do not fit `abstract_state`.

    Raises:
      CheckpointNotFoundError: when there is no complete checkpoint.
      DamagedCheckpointError: the checkpoint's files cannot be read.
      architecture.ArchitectureMismatchError: its weights have other shapes than `abstract_state`'s.
      encryption.WrongKeyError, encryption.MissingKeyError: an encrypted checkpoint and no or the wrong key.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise CheckpointNotFoundError(f"{self.directory}: no complete checkpoint")
    step_folder = self.directory / str(step)
    with _reading(step_folder):
      meta = read_meta(step_folder, self._encryption_key)
      with _plaintext(step_folder / STATE_ITEM, self._encryption_key) as state_folder:
        expected = {"params": abstract_state.params, "batch_stats": abstract_state.batch_stats}
        architecture_lib.check_weights_fit(_variables_of(_stored_arrays(state_folder)), expected, str(step_folder),
                                           configured or {}, meta.get("model"))
        state = ocp.StandardCheckpointer().restore(state_folder, abstract_state)
    return state, meta

  def set_aside(self, step: int) -> pathlib.Path:
    """Renames checkpoint `step`'s folder to `<step>.damaged` (kept, no longer listed); returns the new path."""
    target = self.directory / f"{step}{DAMAGED_SUFFIX}"
    suffix = 1
    while target.exists():
      target = self.directory / f"{step}{DAMAGED_SUFFIX}{suffix}"
      suffix += 1
    (self.directory / str(step)).rename(target)
    self._manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until every started save is on disk."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


@contextlib.contextmanager
def _reading(step_folder: pathlib.Path) -> Iterator[None]:
  """Turns any error of reading `step_folder` into DamagedCheckpointError, except those in `_NOT_DAMAGE`.

  While it reads, the `asyncio` logger is silenced: when one array of a damaged checkpoint fails, Orbax's
  other reads are cancelled and asyncio logs a traceback for each (thousands of lines for one bad file).
  """
  asyncio_logger = logging.getLogger("asyncio")
  level = asyncio_logger.level
  asyncio_logger.setLevel(logging.CRITICAL)
  try:
    yield
  except _NOT_DAMAGE:
    raise
  except Exception as error:  # pylint: disable=broad-except  # Orbax / TensorStore / JSON raise many kinds
    raise DamagedCheckpointError(step_folder, error) from error
  finally:
    asyncio_logger.setLevel(level)


def _variables_of(tree) -> dict:
  """{"params", "batch_stats"} of a restored (or metadata) TrainState tree."""
  return {"params": tree["params"], "batch_stats": tree.get("batch_stats", {}) or {}}


def _stored_arrays(tree_path: pathlib.Path):
  """The array metadata (shape, dtype) tree of the StandardCheckpointer pytree in `tree_path`.

  Read through the handler: `StandardCheckpointer.metadata` also reads Orbax's step metadata file from
  `tree_path` and logs a warning where there is none, as in every `<step>/state` a CheckpointManager writes
  (its `_CHECKPOINT_METADATA` is in `<step>/`).
  """
  return ocp.StandardCheckpointHandler().metadata(tree_path)


def _restore_on_this_host(tree_path: pathlib.Path) -> dict:
  """A pytree checkpoint restored whole onto this process's first local device, whatever the device count
  or process count it was written with (the saved shardings are not used)."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
                                  _stored_arrays(tree_path))
  return ocp.StandardCheckpointer().restore(tree_path, target)


def _is_pytree_checkpoint(path: pathlib.Path) -> bool:
  return (path / _PYTREE_MARKER).is_file()


def _is_step_folder(path: pathlib.Path) -> bool:
  return path.is_dir() and path.name.isdigit() and (path / STATE_ITEM).is_dir()


def find_checkpoint(path) -> pathlib.Path:
  """The step folder of the checkpoint that `path` names: a step folder itself, the latest complete one of
  a checkpoint folder, or of a results folder's `train/`.

  Raises:
    CheckpointNotFoundError (a FileNotFoundError): when `path` holds no complete checkpoint.
  """
  return checkpoint_steps(path)[0]


def checkpoint_steps(path) -> List[pathlib.Path]:
  """The step folders `path` names, newest first: the step folder itself, or every complete checkpoint of a
  checkpoint folder (or of a results folder's `train/`).

  Raises:
    CheckpointNotFoundError (a FileNotFoundError): when `path` holds no complete checkpoint.
  """
  path = pathlib.Path(path)
  if _is_step_folder(path):
    return [path]
  for folder in (path, path / TRAIN_SUBDIR):
    if folder.is_dir():
      steps = sorted((int(p.name) for p in folder.iterdir() if _is_step_folder(p)), reverse=True)
      if steps:
        return [folder / str(step) for step in steps]
  raise CheckpointNotFoundError(f"{path}: no training checkpoint (a <step>/{STATE_ITEM} folder) in it or in its "
                          f"{TRAIN_SUBDIR}/ folder")


def _variables_tree(path: pathlib.Path) -> pathlib.Path:
  """The pytree folder `load_variables` reads: a converted checkpoint's, else a training checkpoint's state."""
  for candidate in (path / VARIABLES_SUBDIR, path):
    if _is_pytree_checkpoint(candidate):
      return candidate
  return find_checkpoint(path) / STATE_ITEM


# Weight sources `load_variables` reads (`weights_format`).
ORBAX, PYTORCH, NPZ = "orbax", "pytorch", "npz"


def weights_format(path) -> str:
  """How the weights at `path` are stored, from the content: ORBAX (a folder: ours), NPZ (a numpy `.npz`
  of a state_dict) or PYTORCH (a file written by `torch.save`: TAO Lightning `.pth`, plain state_dict).

  Raises:
    pytorch.WeightsFileError: nothing at `path`.
    pth_reader.PthError: a file in neither format (the message says what it is and what to do).
  """
  path = pathlib.Path(path)
  if path.is_dir():
    return ORBAX
  if not path.is_file():
    raise pytorch.WeightsFileError(f"{path}: no checkpoint folder or weights file")
  if pytorch.is_npz(path):
    return NPZ
  pth_reader.check_format(path)
  return PYTORCH


def load_variables(path, encryption_key: Optional[encryption.Key] = None, *, model=None) -> dict:
  """{"params", "batch_stats"} (host numpy arrays) of the weights at `path`, in any supported format.

  Args:
    path: an Orbax folder (a results folder, checkpoint folder, step folder or converted-checkpoint folder;
      see the module docstring), or a TAO / PyTorch `.pth` or an `.npz` state_dict (`weights_format`), converted
      on the fly to `model`'s variables without torch (`convert.pytorch`).
    encryption_key: `encryption_key` of the config, for an encrypted Orbax checkpoint.
    model: the configured model (`models.create_model(config)`); needed for `.pth` / `.npz` files.

  Raises:
    CheckpointNotFoundError (a FileNotFoundError): when no checkpoint is found at `path`.
    DamagedCheckpointError: its files cannot be read.
    encryption.EncryptionError: an encrypted checkpoint and no or the wrong key (see `_plaintext`).
    pth_reader.PthError: an unreadable or unsafe `.pth` (UnsafePickleError names the refused global).
    pytorch.ConversionError: the file's state_dict does not fit `model` (every mismatched key listed).
  """
  path = pathlib.Path(path)
  source_format = weights_format(path)
  if source_format != ORBAX:
    if model is None:
      raise errors.CenterPoseError(
          f"{path}: a {source_format} state_dict is converted for the configured model; read it through a "
          "task's config (evaluate/infer/export/train) or convert it with tools/convert_checkpoint.py --arch")
    try:
      return pytorch.convert_state_dict(pytorch.read_state_dict(path), model.model_type, model=model).variables
    except pytorch.ConversionError as error:
      raise pytorch.ConversionError(
          f"{path}: the weights do not fit the configured model (model.backbone.model_type="
          f"{model.model_type}, model.head_conv={model.head_conv}, model.use_convGRU={model.use_convGRU})",
          unknown=error.unknown, missing=error.missing, misshaped=error.misshaped) from None
  tree = _variables_tree(path).absolute()
  with _reading(tree.parent if tree.name == STATE_ITEM else tree), _plaintext(tree, encryption_key) as tree_path:
    restored = _restore_on_this_host(tree_path)
  return _variables_of(jax.tree_util.tree_map(np.asarray, restored))


def is_weights_only(path) -> bool:
  """Whether `path` is a converted checkpoint (weights only: no training state, no meta)."""
  path = pathlib.Path(path)
  return _is_pytree_checkpoint(path / VARIABLES_SUBDIR) or _is_pytree_checkpoint(path)


def stored_architecture(path, encryption_key: Optional[encryption.Key] = None) -> Optional[dict]:
  """The architecture recorded in the meta of the training checkpoint `path` names (see `load_variables`),
  or None (a `.pth` / `.npz` file, a converted checkpoint, or one written before the meta recorded it)."""
  if weights_format(path) != ORBAX or is_weights_only(path):
    return None
  step_folder = find_checkpoint(path)
  with _reading(step_folder):
    return read_meta(step_folder, encryption_key).get("model")


def load_fitting_variables(path, expected: dict, config, encryption_key: Optional[encryption.Key] = None, *,
                           model=None) -> dict:
  """`load_variables(path, model=model)`, checked against the shapes `expected` ({"params", "batch_stats"} of
  the model that will use them, e.g. `architecture.expected_shapes(model)`).

  Raises:
    architecture.ArchitectureMismatchError: naming the checkpoint's and the configured architecture.
    The errors of `load_variables`.
  """
  variables = load_variables(path, encryption_key, model=model)
  architecture_lib.check_weights_fit(variables, expected, str(path), architecture_lib.architecture(config),
                                     stored_architecture(path, encryption_key))
  return variables


def load_state_dict(path, encryption_key: Optional[encryption.Key] = None) -> pytorch.StateDict:
  """TAO-named state_dict (numpy) of the weights at `path` in any format (see `load_variables`): a `.pth` /
  `.npz` file as stored, an Orbax checkpoint converted to TAO's key names (`pytorch.to_tao_state_dict`)."""
  if weights_format(path) == ORBAX:
    return pytorch.to_tao_state_dict(load_variables(path, encryption_key))
  return pytorch.read_state_dict(path)


def read_meta(step_folder, encryption_key: Optional[encryption.Key] = None) -> dict:
  """The JSON meta of one checkpoint step folder (epoch, step, data_iterator, ...), decrypted with
  `encryption_key` when encrypted (errors as `load_variables`)."""
  with _plaintext(pathlib.Path(step_folder).absolute() / META_ITEM, encryption_key) as meta_folder:
    return ocp.JsonCheckpointHandler().restore(meta_folder)


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


def resume_source(config, directory=None) -> Optional[Tuple[pathlib.Path, List[int]]]:
  """(checkpoint folder, steps to try, newest first) a training run continues from, or None for a fresh start.

  `train.resume_training_checkpoint_path` wins: a step folder gives that step only, a checkpoint/results
  folder all of its steps. Otherwise every complete checkpoint in `directory` (default `train_dir(config)`),
  if any. A run resumes from the first of the steps that can be read.
  """
  explicit = config.train.get("resume_training_checkpoint_path")
  if explicit:
    step_folders = checkpoint_steps(explicit)
  else:
    try:
      step_folders = checkpoint_steps(directory or train_dir(config))
    except FileNotFoundError:
      return None
  return step_folders[0].parent, [int(folder.name) for folder in step_folders]
