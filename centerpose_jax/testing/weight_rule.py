"""The deterministic weight rule of fixtures/tao_reference/networks/README.md, (tests and benchmarks).

Every tensor of a TAO state_dict (and the network input) is a pure function of its key and shape: uint32
integer hashing gives u in [0, 1), mapped by the key's role. Rebuilding a state_dict from `keys_<arch>.tsv`
with this rule and converting it reproduces the network the golden outputs came from.
"""

import pathlib
import re
import zlib
from typing import Dict, List, Tuple

import numpy as np


def _mix32(x: np.ndarray) -> np.ndarray:
  """The README's uint32 finaliser (wrapping arithmetic)."""
  x = np.asarray(x, dtype=np.uint32).copy()
  x ^= x >> np.uint32(16)
  x *= np.uint32(0x7FEB352D)
  x ^= x >> np.uint32(15)
  x *= np.uint32(0x846CA68B)
  x ^= x >> np.uint32(16)
  return x


def uniform(key: str, count: int, salt: int = 0) -> np.ndarray:
  """u[i] = (mix32(mix32(i) ^ seed(key)) >> 8) * 2^-24 for i < count, float64 in [0, 1)."""
  seed = _mix32(np.array([zlib.crc32(key.encode("utf-8")) ^ salt], dtype=np.uint32))[0]
  hashed = _mix32(_mix32(np.arange(count, dtype=np.uint32)) ^ seed)
  return (hashed >> np.uint32(8)).astype(np.float64) * 2.0**-24


def make_tensor(key: str, shape: Tuple[int, ...], salt: int = 0) -> np.ndarray:
  """The rule's value of state_dict entry `key` (no `model.` prefix) with PyTorch shape `shape`."""
  shape = tuple(shape)
  last = key.split(".")[-1]
  if last == "num_batches_tracked":
    return np.zeros(shape, np.int64)
  u = uniform(key, int(np.prod(shape)), salt)
  if last == "running_mean":
    value = (u - 0.5) * 0.2
  elif last in ("running_var", "temperature"):
    value = 0.5 + u
  elif last == "cls_token":
    value = 2 * u - 1
  elif re.fullmatch(r"gamma\d*", last):
    value = 0.25 + 0.5 * u
  elif len(shape) == 1 and last == "weight":
    value = 0.5 + u
  elif len(shape) == 1 and last == "bias":
    value = (u - 0.5) * 0.2
  elif re.search(r"(^|\.)up_\d+\.weight$", key):
    value = (2 * u - 1) * np.sqrt(3 / 4)
  else:
    value = (2 * u - 1) * np.sqrt(3 / np.prod(shape[1:]))
  return value.reshape(shape).astype(np.float32)


def make_input(shape: Tuple[int, ...], salt: int = 0) -> np.ndarray:
  """The rule's network input (key "input"), float32 in the given (NCHW) shape."""
  return ((2 * uniform("input", int(np.prod(shape)), salt) - 1) * 2).reshape(shape).astype(np.float32)


def read_keys(tsv_path: pathlib.Path) -> List[Tuple[str, Tuple[int, ...], str]]:
  """(key, shape, dtype) rows of a `keys_<arch>.tsv` file, in state_dict order."""
  rows = []
  for line in tsv_path.read_text().splitlines():
    if not line.strip():
      continue
    key, shape, dtype = line.split("\t")
    rows.append((key, () if shape == "scalar" else tuple(int(s) for s in shape.split("x")), dtype))
  return rows


def make_state_dict(tsv_path: pathlib.Path, salt: int = 0) -> Dict[str, np.ndarray]:
  """The rule-generated TAO state_dict for every key of `keys_<arch>.tsv` (numpy, PyTorch layouts)."""
  return {key: make_tensor(key, shape, salt) for key, shape, _ in read_keys(tsv_path)}
