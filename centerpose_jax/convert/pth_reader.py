"""Reads PyTorch checkpoint files (`torch.save`) as numpy, without torch and without running the file's code.

A `.pth` written by PyTorch >= 1.6 is a zip archive: `<root>/data.pkl` (a pickle of the saved object) and
`<root>/data/<key>` (the raw bytes of each tensor storage), plus `<root>/byteorder` ("little" or "big";
absent in old files, which are little-endian). The pickle refers to each storage by a persistent id
("storage", <storage class>, key, location, numel) and rebuilds each tensor with
`torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.

`pickle.load` on such a file imports and calls whatever globals the pickle names, so a crafted file runs any
code (e.g. `os.system`). This reader never imports anything. Its unpickler resolves globals from an allow-list
of its own safe stand-ins: tensor rebuilders that slice the storage bytes into numpy arrays (bounds-checked),
storage classes (element types), `collections.OrderedDict` / `Counter` / `defaultdict`, `torch.Size` /
`torch.device` / torch dtypes (as tuples and text), numpy arrays and scalars, and `_codecs.encode` for bytes. Any other global is never imported:
  * calling it (a `REDUCE`: the way `os.system` or `subprocess.Popen` would run) refuses the whole file with
    `UnsafePickleError`, naming the global;
  * instantiating it as a plain object (`NEWOBJ` + `BUILD`: how Lightning's hyper-parameters, callbacks'
    states and other data objects are pickled) gives an inert `OpaqueObject` record of its name and state.
The weights themselves must be tensors: `state_dict_from_checkpoint` refuses a state_dict holding anything
else, naming its global.

Files in the legacy (non-zip, PyTorch < 1.6 or `_use_new_zipfile_serialization=False`) format and
TorchScript archives are refused with a message saying how to re-save them.
"""

import codecs
import collections
import pathlib
import pickle
import zipfile
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from centerpose_jax import errors

# Storage classes of the persistent ids -> numpy element type. bfloat16 is read as its raw 16 bits and widened
# to float32 (numpy has no bfloat16).
_BFLOAT16 = "bfloat16"
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": _BFLOAT16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
    "ComplexFloatStorage": np.complex64, "ComplexDoubleStorage": np.complex128, "UntypedStorage": np.uint8,
}
# torch dtype globals (a pickled `torch.float32` is the global `torch float32`), kept as their names.
TORCH_DTYPE_NAMES = frozenset({
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
    "complex64", "complex128", "double", "float", "half", "long", "int", "short",
})
_LEGACY_HINT = ("re-save it with PyTorch >= 1.6 in the zip format, loading it only if you trust it: "
                "torch.save(torch.load('old.pth', weights_only=True), 'new.pth')")


class PthError(errors.CenterPoseError, ValueError):
  """A file that is not a readable PyTorch checkpoint (the message names the file and the reason)."""


class UnsafePickleError(PthError):
  """A checkpoint whose pickle calls a global outside the allow-list (see the module docstring)."""

  def __init__(self, path, global_name: str, what: str = "calls"):
    self.global_name = global_name
    super().__init__(
        f"{path}: refused: its pickle {what} `{global_name}`, which a weights file never needs (only tensors "
        "and plain containers are built; nothing from the file is imported or run). If you made this file, "
        "save the state_dict alone: torch.save(model.state_dict(), 'weights.pth')")


class _OpaqueType(type):
  """Metaclass of the stand-ins for globals outside the allow-list: calling one refuses the file."""

  def __call__(cls, *args, **kwargs):
    raise _RefusedCall(cls.global_name)


class OpaqueObject(metaclass=_OpaqueType):
  """An inert record of an object of a class that was not imported: its global name, NEWOBJ args and state.

  Attributes:
    global_name: "module.qualname" of the class named in the pickle.
    args: the arguments the pickle passed to `cls.__new__`.
    state: what the pickle's BUILD gave (usually the object's attribute dict), or None.
  """
  global_name = "builtins.object"

  def __new__(cls, *args):
    instance = object.__new__(cls)
    instance.__dict__.update(args=args, state=None)
    return instance

  def __setstate__(self, state):
    self.__dict__["state"] = state

  def __setitem__(self, key, value):  # dict subclasses (e.g. Lightning's AttributeDict) pickle their items
    state = self.__dict__.setdefault("items", {})
    state[key] = value

  def append(self, value):  # list subclasses
    self.__dict__.setdefault("list_items", []).append(value)

  def extend(self, values):
    self.__dict__.setdefault("list_items", []).extend(values)

  def __repr__(self):
    return f"<OpaqueObject {self.global_name}>"


class _RefusedCall(Exception):
  """Raised inside the unpickler; turned into UnsafePickleError with the file's name."""

  def __init__(self, global_name):
    super().__init__(global_name)
    self.global_name = global_name


def _opaque_type(global_name: str) -> type:
  return _OpaqueType(global_name.rsplit(".", 1)[-1], (OpaqueObject,), {"global_name": global_name})


class _StorageType:
  """Stand-in for a `torch.<X>Storage` class: the element type of the storages it names."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = STORAGE_DTYPES[name]

  def __call__(self, *args, **kwargs):
    raise _RefusedCall(f"torch.{self.name}")


class _Storage:
  """A storage's elements: `flat` [numel] numpy array (bfloat16 as raw uint16, flagged by `bfloat16`)."""

  def __init__(self, flat: np.ndarray, bfloat16: bool):
    self.flat = flat
    self.bfloat16 = bfloat16


def _as_int_tuple(value, what) -> Tuple[int, ...]:
  if not isinstance(value, (tuple, list)) or not all(isinstance(v, int) and not isinstance(v, bool)
                                                      for v in value):
    raise _Malformed(f"tensor {what} must be a tuple of integers, got {value!r}")
  return tuple(value)


class _Malformed(Exception):
  """A structurally invalid checkpoint; turned into PthError with the file's name."""


def _rebuild_tensor(storage, storage_offset, size, stride, *unused) -> np.ndarray:
  """numpy copy of the tensor viewing `storage` at element `storage_offset` with `size` and `stride`.

  The view is checked to lie inside the storage before numpy's strided view is taken.
  """
  del unused  # requires_grad, backward_hooks, metadata
  if not isinstance(storage, _Storage):
    raise _Malformed("a tensor's storage is not a storage record")
  size, stride = _as_int_tuple(size, "size"), _as_int_tuple(stride, "stride")
  if len(size) != len(stride) or not isinstance(storage_offset, int) or storage_offset < 0:
    raise _Malformed(f"bad tensor layout: offset {storage_offset!r}, size {size}, stride {stride}")
  if any(n < 0 for n in size) or any(s < 0 for s in stride):
    raise _Malformed(f"bad tensor layout: size {size}, stride {stride}")
  flat = storage.flat
  if 0 not in size:
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
      raise _Malformed(f"tensor of size {size} and stride {stride} at offset {storage_offset} reads past its "
                       f"storage of {flat.size} elements")
    view = np.lib.stride_tricks.as_strided(flat[storage_offset:], shape=size,
                                           strides=[s * flat.itemsize for s in stride], writeable=False)
    array = np.array(view)
  else:
    array = np.zeros(size, flat.dtype)
  if storage.bfloat16:  # bfloat16 is the upper half of a float32
    array = (array.astype(np.uint32) << 16).view(np.float32)
  return array


def _rebuild_parameter(data, *unused):
  del unused  # requires_grad, backward_hooks[, state]
  return data


def _rebuild_from_type_v2(function, new_type, args, state):
  """Tensor subclasses (e.g. `nn.Parameter` in some versions): rebuilt as the plain array."""
  del new_type, state
  if function not in (_rebuild_tensor, _rebuild_parameter):
    raise _RefusedCall(getattr(function, "global_name", repr(function)))
  return function(*args)


def _encode(text, encoding="latin1"):
  """`_codecs.encode`, which protocol-2 pickles use for `bytes`; only the latin-1 byte encoding."""
  if not isinstance(text, str) or codecs.lookup(encoding).name != "iso8859-1":
    raise _RefusedCall("_codecs.encode")
  return text.encode("latin1")


def _reconstructor(cls, base, state):
  """`copyreg._reconstructor` (protocol 0/1 objects): only the inert records of not-imported classes."""
  if not isinstance(cls, _OpaqueType):
    raise _RefusedCall("copyreg._reconstructor")
  del base
  instance = cls.__new__(cls)
  instance.__setstate__(state)
  return instance


def _torch_device(kind, index=None):
  """`torch.device` (optimizer and callback states may hold one): its text, e.g. "cuda:0"."""
  return f"{kind}:{index}" if index is not None else str(kind)


def _numpy_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype):
    raise _Malformed("numpy scalar without a dtype")
  if dtype.hasobject:
    return data
  return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(name, align=False, copy=False):
  del copy
  return np.dtype(name, align=align)


def _numpy_reconstruct(subtype, shape, dtype_code):
  del subtype
  return np.ndarray.__new__(np.ndarray, shape, dtype_code)


# (module, name) -> the safe stand-in the unpickler returns.
_SAFE_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Size"): tuple,
    ("torch", "device"): _torch_device,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "Counter"): collections.Counter,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _encode,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy", "dtype"): _numpy_dtype,
}
# Protocol-2 pickles (torch.save's) name builtins by their Python 2 modules.
_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
  _SAFE_GLOBALS[(_module, "scalar")] = _numpy_scalar
  _SAFE_GLOBALS[(_module, "_reconstruct")] = _numpy_reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
  """Unpickler of `data.pkl`: globals from `_SAFE_GLOBALS` or inert stand-ins, storages from the archive."""

  def __init__(self, file, archive: zipfile.ZipFile, root: str, byteorder: str):
    super().__init__(file)
    self._archive, self._root, self._byteorder = archive, root, byteorder
    self._storages: Dict[str, _Storage] = {}

  def find_class(self, module, name):
    module = _PYTHON2_MODULES.get(module, module)
    if (module, name) in _SAFE_GLOBALS:
      return _SAFE_GLOBALS[(module, name)]
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name in TORCH_DTYPE_NAMES:
      return f"torch.{name}"
    return _opaque_type(f"{module}.{name}")

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
      raise _Malformed(f"unknown persistent id {str(pid)[:80]}")
    _, storage_type, key, _, numel = pid
    if not isinstance(storage_type, _StorageType):
      raise _RefusedCall(getattr(storage_type, "global_name", repr(storage_type)))
    if not isinstance(key, str) or not isinstance(numel, int):
      raise _Malformed(f"bad storage id {pid!r}")
    if key not in self._storages:
      self._storages[key] = self._read_storage(key, storage_type, numel)
    return self._storages[key]

  def _read_storage(self, key: str, storage_type: _StorageType, numel: int) -> _Storage:
    bfloat16 = storage_type.dtype == _BFLOAT16
    dtype = np.dtype(np.uint16 if bfloat16 else storage_type.dtype)
    dtype = dtype.newbyteorder("<" if self._byteorder == "little" else ">")
    try:
      raw = self._archive.read(f"{self._root}/data/{key}")
    except KeyError:
      raise _Malformed(f"storage {key!r} is missing from the archive") from None
    if len(raw) < numel * dtype.itemsize:
      raise _Malformed(f"storage {key!r} has {len(raw)} bytes, {numel} elements of {dtype.itemsize} expected")
    flat = np.frombuffer(raw, dtype=dtype, count=numel)
    return _Storage(flat.astype(flat.dtype.newbyteorder("=")), bfloat16)


def _archive_root(archive: zipfile.ZipFile, path) -> str:
  """The top folder of the archive holding `data.pkl`."""
  names = archive.namelist()
  if any(name.endswith("/constants.pkl") for name in names):
    raise PthError(f"{path}: a TorchScript archive, not a checkpoint; save the weights instead: "
                   "torch.save(model.state_dict(), 'weights.pth')")
  roots = [name[:-len("/data.pkl")] for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
  if len(roots) != 1:
    raise PthError(f"{path}: a zip archive without PyTorch's <name>/data.pkl; not a PyTorch checkpoint")
  return roots[0]


def check_format(path) -> None:
  """Raises PthError, saying what the file is, unless `path` is in PyTorch's zip format (the pickle is not
  read)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise PthError(f"{path}: no such file")
  if not zipfile.is_zipfile(path):
    with open(path, "rb") as f:
      head = f.read(2)
    if head[:1] == b"\x80":
      raise PthError(f"{path}: a PyTorch checkpoint in the legacy (non-zip) format, which cannot be read "
                     f"without running its pickle; {_LEGACY_HINT}")
    raise PthError(f"{path}: not a PyTorch checkpoint (expected the zip format written by torch.save)")
  with zipfile.ZipFile(path) as archive:
    _archive_root(archive, path)


def load(path) -> Any:
  """The object `torch.save` wrote to `path`, tensors as numpy arrays (see the module docstring).

  Raises:
    UnsafePickleError: the pickle calls a global outside the allow-list (nothing has been run).
    PthError: not a file, not PyTorch's zip format (legacy format, TorchScript, ...), or malformed.
  """
  check_format(path)
  with zipfile.ZipFile(path) as archive:
    root = _archive_root(archive, path)
    names = set(archive.namelist())
    byteorder = "little"
    if f"{root}/byteorder" in names:
      byteorder = archive.read(f"{root}/byteorder").decode("ascii", "replace").strip()
      if byteorder not in ("little", "big"):
        raise PthError(f"{path}: unknown byte order {byteorder!r}")
    with archive.open(f"{root}/data.pkl") as pickled:
      try:
        return _RestrictedUnpickler(pickled, archive, root, byteorder).load()
      except _RefusedCall as refused:
        raise UnsafePickleError(path, refused.global_name) from None
      except _Malformed as error:
        raise PthError(f"{path}: malformed checkpoint: {error}") from None
      except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise PthError(f"{path}: cannot read its pickle ({type(error).__name__}: {error})") from None


def state_dict_from_checkpoint(checkpoint: Any, path) -> Mapping[str, Any]:
  """The state_dict inside a loaded checkpoint: a Lightning checkpoint's `state_dict`, a dict's `model`
  state_dict, or the mapping itself; every value must be an array.

  TAO's encrypted checkpoints (bytes `state_dict`) are returned as they are, for the caller's message.

  Raises:
    UnsafePickleError: a value of the state_dict is a not-imported object (named).
    PthError: the checkpoint is not a mapping of names to tensors.
  """
  if not isinstance(checkpoint, Mapping):
    if isinstance(checkpoint, OpaqueObject):
      raise UnsafePickleError(path, checkpoint.global_name, what="holds an object of")
    raise PthError(f"{path}: holds a {type(checkpoint).__name__}, not a state_dict (a mapping of names to tensors)")
  state_dict = checkpoint.get("state_dict", checkpoint)
  if "state_dict" not in checkpoint and isinstance(checkpoint.get("model"), Mapping):
    state_dict = checkpoint["model"]
  if isinstance(state_dict, (bytes, bytearray)):
    return checkpoint
  if not isinstance(state_dict, Mapping):
    raise PthError(f"{path}: its state_dict is a {type(state_dict).__name__}, not a mapping of names to tensors")
  for key, value in state_dict.items():
    if isinstance(value, OpaqueObject):
      raise UnsafePickleError(path, value.global_name, what=f"stores under {key!r} an object of")
    if not isinstance(value, (np.ndarray, np.generic)):
      raise PthError(f"{path}: state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
  return state_dict
