"""TAO CenterPose PyTorch state_dicts <-> Flax variables, and ImageNet backbone weights.

The Flax module tree mirrors TAO's state_dict key paths (every dotted component is a module name, Sequential
indices included), so the mapping is derived from the model's own variable tree: each leaf
(collection, module path, leaf name) gives one TAO key and a layout rule from `LEAF_RULES`. Keys that TAO
stores but the model does not use are an explicit allow-list (`UNUSED_TAO_KEYS`). Anything else unknown,
missing or wrongly shaped stops the conversion with the full list. Everything here is numpy: `.pth` files are
read by `pth_reader`, which needs no torch and runs no code from the file.
"""

import dataclasses
import functools
import pathlib
import re
import zipfile
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import flax
import numpy as np
from flax import traverse_util
from flax.core import meta

from centerpose_jax import errors
from centerpose_jax.convert import pth_reader
from centerpose_jax.models import registry

StateDict = Dict[str, np.ndarray]
Variables = Dict[str, Any]

# Leading components that wrap the model's keys: Lightning's `model.` and DataParallel's `module.`.
WRAPPER_PREFIXES = ("model.", "module.")
# TAO keys with no counterpart in our variables, and why.
UNUSED_TAO_KEYS = {
    r"(^|\.)num_batches_tracked$": "BatchNorm step counter (Flax keeps none; TAO's momentum ignores it)",
    r"^base\.level[34]\.project\.": "DLA34 projection whose output the inner Tree overwrites (never used)",
}
BACKBONE_PREFIX = "base."


class ConversionError(errors.CenterPoseError, ValueError):
  """A state_dict that does not match the model: the unknown, missing and misshaped keys (all in the
  attributes; the message shows the first MAX_LISTED of each kind and counts the rest)."""

  MAX_LISTED = 20

  def __init__(self, message: str, unknown=(), missing=(), misshaped=()):
    self.unknown, self.missing, self.misshaped = list(unknown), list(missing), list(misshaped)
    lines = [message]
    for title, items in (("unknown keys", self.unknown), ("missing keys", self.missing),
                         ("wrongly shaped keys", self.misshaped)):
      if items:
        lines.append(f"{len(items)} {title}:")
        lines.extend(f"  {item}" for item in items[:self.MAX_LISTED])
        if len(items) > self.MAX_LISTED:
          lines.append(f"  ... and {len(items) - self.MAX_LISTED} more")
    super().__init__("\n".join(lines))


class EncryptedCheckpointError(errors.CenterPoseError, ValueError):
  """A TAO checkpoint whose state_dict is encrypted with NVIDIA's proprietary codec."""


class WeightsFileError(errors.CenterPoseError, FileNotFoundError):
  """A weights file that does not exist (the message says where to get it, when we know)."""


# ----------------------------------------------------------------------------------------------------
# Leaf layout rules


def _torch_weight_to_kernel(weight: np.ndarray) -> np.ndarray:
  """Conv2d / ConvTranspose2d weight [O, I / g, kh, kw] -> HWIO [kh, kw, I / g, O];
  Linear weight [out, in] -> [in, out]."""
  if weight.ndim == 4:
    return weight.transpose(2, 3, 1, 0)
  if weight.ndim == 2:
    return weight.T
  raise ValueError(f"a kernel weight must be 2-D or 4-D, got shape {weight.shape}")


def _kernel_to_torch_weight(kernel: np.ndarray) -> np.ndarray:
  """Inverse of `_torch_weight_to_kernel`."""
  if kernel.ndim == 4:
    return kernel.transpose(3, 2, 0, 1)
  if kernel.ndim == 2:
    return kernel.T
  raise ValueError(f"a kernel must be 2-D or 4-D, got shape {kernel.shape}")


def _same(array: np.ndarray) -> np.ndarray:
  return array


@dataclasses.dataclass(frozen=True)
class LeafRule:
  """How one kind of Flax leaf is stored by PyTorch: its name there and the layout change both ways."""
  torch_name: str
  to_flax: Callable[[np.ndarray], np.ndarray] = _same
  to_torch: Callable[[np.ndarray], np.ndarray] = _same


# (collection, Flax leaf name) -> rule. A params leaf not listed keeps its name and layout (`bias`, TAO's
# `gamma`, `gamma1`, `temperature`, `cls_token`, ...). The up layers need no rule of their own: their kernel keeps
# PyTorch's orientation (see `layers.DepthwiseUpsample`).
LEAF_RULES = {
    ("params", "kernel"): LeafRule("weight", _torch_weight_to_kernel, _kernel_to_torch_weight),
    ("params", "scale"): LeafRule("weight"),
    ("batch_stats", "mean"): LeafRule("running_mean"),
    ("batch_stats", "var"): LeafRule("running_var"),
}


class LeafPlan(NamedTuple):
  """Where one TAO key goes: the Flax leaf (collection, path), its shape, and the layout rule."""
  collection: str
  path: Tuple[str, ...]
  shape: Tuple[int, ...]
  rule: LeafRule

  @property
  def torch_shape(self) -> Tuple[int, ...]:
    return self.rule.to_torch(np.broadcast_to(np.float32(0), self.shape)).shape


def _flatten(variables: Mapping[str, Any]) -> Dict[Tuple[str, ...], Any]:
  """{(collection, *module path, leaf): leaf} of a (possibly frozen or boxed) variables tree."""
  return traverse_util.flatten_dict(flax.core.unfreeze(meta.unbox(variables)))


def tao_key_plan(variables: Mapping[str, Any]) -> Dict[str, LeafPlan]:
  """TAO state_dict key (no `model.` prefix) -> LeafPlan, for every leaf of `variables` (arrays or shapes)."""
  plan = {}
  for (collection, *path), leaf in _flatten(variables).items():
    *modules, name = path
    rule = LEAF_RULES.get((collection, name))
    if rule is None:
      if collection != "params":
        raise ValueError(f"no TAO name for {collection}/{'/'.join(path)}; add a rule to LEAF_RULES")
      rule = LeafRule(name)
    key = ".".join([*modules, rule.torch_name])
    if key in plan:
      raise ValueError(f"{collection}/{'/'.join(path)} and {plan[key].collection}/{'/'.join(plan[key].path)} "
                       f"both map to {key}")
    plan[key] = LeafPlan(collection, tuple(path), tuple(leaf.shape), rule)
  return plan


def is_unused_tao_key(key: str) -> bool:
  """Whether TAO stores `key` (without prefix) although our model has no use for it (`UNUSED_TAO_KEYS`)."""
  return any(re.search(pattern, key) for pattern in UNUSED_TAO_KEYS)


# ----------------------------------------------------------------------------------------------------
# State dicts and checkpoint files


def strip_wrapper_prefixes(state_dict: Mapping[str, Any]) -> Dict[str, Any]:
  """Drops leading `model.` (Lightning) and `module.` (DataParallel) components from every key."""
  stripped = {}
  for key, value in state_dict.items():
    while key.startswith(WRAPPER_PREFIXES):
      key = key.split(".", 1)[1]
    if key in stripped:
      raise ConversionError(f"two entries map to {key!r} once the wrapper prefixes are removed")
    stripped[key] = value
  return stripped


def extract_state_dict(checkpoint: Mapping[str, Any]) -> Mapping[str, Any]:
  """The state_dict of a loaded TAO Lightning checkpoint (its `state_dict` entry) or of a bare state_dict.

  Raises:
    EncryptedCheckpointError: the checkpoint is encrypted (`state_dict_encrypted` set, bytes state_dict).
  """
  state_dict = checkpoint.get("state_dict", checkpoint)
  if checkpoint.get("state_dict_encrypted") or isinstance(state_dict, (bytes, bytearray)):
    raise EncryptedCheckpointError(
        "this TAO checkpoint is encrypted (state_dict_encrypted is set and its state_dict is bytes). It must "
        "be decrypted by TAO first: load it in TAO with its encryption key and save the decrypted checkpoint "
        "(or its state_dict) without a key, then convert that file.")
  return state_dict


def _to_numpy(value: Any) -> np.ndarray:
  """A torch tensor or array-like -> numpy array (bfloat16/half tensors become float32)."""
  if hasattr(value, "detach"):  # torch.Tensor
    value = value.detach().cpu()
    if value.is_floating_point():
      value = value.float()
    return value.numpy()
  return np.asarray(value)


def is_npz(path) -> bool:
  """Whether `path` is a numpy `.npz` archive (a zip of `.npy` arrays), by content."""
  if not zipfile.is_zipfile(path):
    return False
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
  return bool(names) and all(name.endswith(".npy") for name in names)


def read_state_dict(path) -> StateDict:
  """The state_dict stored in `path`, as numpy arrays with the file's keys; never imports torch.

  The format is detected from the content: an `.npz` of arrays (read with `allow_pickle=False`), or a
  PyTorch `torch.save` file read by `pth_reader` (no code from the file runs): a TAO Lightning checkpoint (its
  `state_dict`), a bare state_dict, or a dict holding one under `model`.

  Raises:
    WeightsFileError: no file at `path`.
    pth_reader.PthError: not a readable checkpoint (UnsafePickleError: its pickle would run code).
    EncryptedCheckpointError: a TAO checkpoint encrypted with NVIDIA's codec.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise WeightsFileError(f"{path}: no such checkpoint file")
  if is_npz(path):
    with np.load(path, allow_pickle=False) as data:
      checkpoint = {key: data[key] for key in data.files}
  else:
    checkpoint = pth_reader.state_dict_from_checkpoint(pth_reader.load(path), path)
  return {key: _to_numpy(value) for key, value in extract_state_dict(checkpoint).items()}


# ----------------------------------------------------------------------------------------------------
# TAO state_dict <-> variables


def model_variable_shapes(model, image_size: int = 64) -> Variables:
  """Shapes (jax.ShapeDtypeStruct) of `model`'s variables, without running the init."""
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x, train=False))


@functools.lru_cache(maxsize=8)
def _model_key_plan(model) -> Dict[str, LeafPlan]:
  """`tao_key_plan` of `model`'s variable shapes (Flax modules compare and hash by their fields); read-only."""
  return tao_key_plan(model_variable_shapes(model))


def _default_model(arch: str):
  from centerpose_jax.models import centerpose  # pylint: disable=g-import-not-at-top
  return centerpose.CenterPose(model_type=arch)


class Conversion(NamedTuple):
  """Result of `convert_state_dict`: the variables and which TAO keys went where."""
  variables: Variables
  used_keys: List[str]  # TAO keys (no prefix) copied into the variables.
  unused_keys: List[str]  # allow-listed TAO keys that have no counterpart (`UNUSED_TAO_KEYS`).


def _fill(plan: Mapping[str, LeafPlan], state_dict: Mapping[str, Any],
          keys) -> Tuple[Dict[Tuple[str, ...], np.ndarray], List[str]]:
  """Converted leaves {(collection, *path): float32 array} of `keys`, and a line per wrongly shaped key."""
  leaves, misshaped = {}, []
  for key in keys:
    entry = plan[key]
    value = _to_numpy(state_dict[key])
    if value.shape != entry.torch_shape:
      misshaped.append(f"{key}: got {list(value.shape)}, expected {list(entry.torch_shape)}")
      continue
    leaves[(entry.collection, *entry.path)] = np.ascontiguousarray(entry.rule.to_flax(value), np.float32)
  return leaves, misshaped


def convert_state_dict(state_dict: Mapping[str, Any], arch: str, *, model=None) -> Conversion:
  """TAO CenterPose state_dict -> Flax variables of `model` (default: TAO's defaults for `arch`).

  Every key must be accounted for: keys of the model (after stripping `model.`/`module.`) are converted,
  allow-listed unused keys are skipped, and any unknown, missing or misshaped key raises ConversionError
  listing all of them. Values may be numpy arrays or torch tensors; the result holds float32 numpy arrays.
  """
  if isinstance(state_dict, (bytes, bytearray)):
    extract_state_dict({"state_dict": state_dict})  # raises the encryption message
  state_dict = strip_wrapper_prefixes(extract_state_dict(state_dict))
  plan = _model_key_plan(model or _default_model(arch))
  unused = [key for key in state_dict if key not in plan and is_unused_tao_key(key)]
  unknown = sorted(key for key in state_dict if key not in plan and not is_unused_tao_key(key))
  missing = sorted(key for key in plan if key not in state_dict)
  leaves, misshaped = _fill(plan, state_dict, [key for key in plan if key in state_dict])
  if unknown or missing or misshaped:
    raise ConversionError(f"the state_dict does not match CenterPose {arch}", unknown=unknown,
                          missing=missing, misshaped=misshaped)
  return Conversion(traverse_util.unflatten_dict(leaves), list(plan), unused)


def from_tao_state_dict(state_dict: Mapping[str, Any], arch: str, *, model=None) -> Variables:
  """TAO CenterPose state_dict -> {'params', 'batch_stats'} (see `convert_state_dict`)."""
  return convert_state_dict(state_dict, arch, model=model).variables


def _dla_dead_projections(state_dict: Mapping[str, np.ndarray]) -> StateDict:
  """TAO's never-used `base.level{3,4}.project.*`, filled with copies of `base.level{3,4}.tree1.project.*`
  (same shapes), so that TAO can load the state_dict strictly."""
  dead = {}
  for level in (3, 4):
    source = f"base.level{level}.tree1.project."
    for key, value in state_dict.items():
      if key.startswith(source):
        dead[f"base.level{level}.project." + key[len(source):]] = value.copy()
  return dead


def to_tao_state_dict(variables: Mapping[str, Any], *, prefix: str = "") -> StateDict:
  """Flax variables -> TAO state_dict (numpy, PyTorch layouts), loadable strictly by TAO's model.

  Adds what TAO stores beyond our variables: `num_batches_tracked` (0) for every BatchNorm and, for DLA34,
  the unused `base.level{3,4}.project.*`. `prefix="model."` gives a Lightning checkpoint's keys.
  """
  flat = _flatten(variables)
  state_dict = {}
  for key, entry in tao_key_plan(variables).items():
    leaf = np.asarray(flat[(entry.collection, *entry.path)])
    state_dict[key] = np.ascontiguousarray(entry.rule.to_torch(leaf))
    if entry.collection == "batch_stats" and entry.path[-1] == "var":
      state_dict[key.rsplit(".", 1)[0] + ".num_batches_tracked"] = np.zeros((), np.int64)
  state_dict.update(_dla_dead_projections(state_dict))
  return {prefix + key: value for key, value in state_dict.items()}


# ----------------------------------------------------------------------------------------------------
# ImageNet-pretrained backbones


class PretrainedBackbone(NamedTuple):
  """Result of `load_pretrained_backbone`."""
  variables: Variables  # the input variables with the backbone leaves replaced
  used_keys: List[str]  # file keys (normalised) loaded into `base`
  unused_keys: List[str]  # file keys with no backbone counterpart (classifier, ...)
  not_loaded: List[str]  # backbone keys the file lacks (keep their current values)


def _normalise_pretrained_key(key: str) -> Optional[str]:
  """A pretrained file's key as a key below `base.`, or None to skip it.

  As TAO's loaders: wrapper prefixes (`model.`, `module.`) and a leading `backbone.` or `base.` are dropped,
  `ema_*` entries skipped, and NVlabs FAN's `pos_embeder.` renamed `pos_embed.`.
  """
  while key.startswith(WRAPPER_PREFIXES + ("backbone.", BACKBONE_PREFIX)):
    key = key.split(".", 1)[1]
  if key.startswith("ema_"):
    return None
  return key.replace("pos_embeder.", "pos_embed.")


def _split_fused_qkv(state_dict: Mapping[str, np.ndarray]) -> StateDict:
  """NVlabs FAN's fused class-attention `attn.qkv` [3E, ...] -> TAO's separate `attn.q`, `attn.k`,
  `attn.v`."""
  split = {}
  for key, value in state_dict.items():
    match = re.fullmatch(r"(.*\.attn\.)qkv\.(weight|bias)", key)
    if match is None:
      split[key] = value
      continue
    for name, part in zip("qkv", np.split(value, 3, axis=0)):
      split[f"{match.group(1)}{name}.{match.group(2)}"] = part
  return split


def load_pretrained_backbone(variables: Mapping[str, Any], source, arch: str) -> PretrainedBackbone:
  """Loads an ImageNet classification checkpoint into the backbone (`base`) of `variables`.

  DLA34: `dla34-ba72cf86.pth` (keys without `base.`, with `fc.*`; timm's `dla34` has the same layout).
  FAN: a TAO/NGC FAN hybrid classification file (keys possibly under `backbone.`/`module.`, with the
  classifier's `norm.*`/`head.*`; TAO's `out_norm*` and `learnable_downsample.*` are not in it).
  A whole CenterPose state_dict (keys under `base.`) works too: its backbone is taken.

  Args:
    variables: the model's variables; the `base` leaves found in the source are replaced.
    source: a `.pth` / `.npz` file (`read_state_dict`), or an already read state_dict (name -> array).
    arch: the backbone (`model.backbone.model_type`).

  Raises:
    WeightsFileError: no file at `source` (the message says where to get one).
    ConversionError: no key matched the backbone, or a matched key has the wrong shape.
  """
  if isinstance(source, Mapping):
    state_dict, path = source, "the given state_dict"
  else:
    path = pathlib.Path(source)
    if not path.is_file():
      raise WeightsFileError(
          f"pretrained {arch} backbone weights not found at {path}: download "
          f"{registry.backbone(arch).imagenet_weights} and point model.backbone.pretrained_backbone_path at it")
    state_dict = read_state_dict(path)
  file_state = {}
  for key, value in state_dict.items():
    key = _normalise_pretrained_key(key)
    if key is not None:
      file_state[BACKBONE_PREFIX + key] = value
  file_state = _split_fused_qkv(file_state)
  plan = {key: entry for key, entry in tao_key_plan(variables).items() if key.startswith(BACKBONE_PREFIX)}
  used = [key for key in file_state if key in plan]
  if not used:
    raise ConversionError(
        f"no key of {path} matches the {arch} backbone (first keys: {list(file_state)[:5]})")
  leaves, misshaped = _fill(plan, file_state, used)
  if misshaped:
    raise ConversionError(f"{path} does not fit the {arch} backbone", misshaped=misshaped)
  leaves = {**_flatten(variables), **leaves}
  strip = len(BACKBONE_PREFIX)
  return PretrainedBackbone(
      variables=traverse_util.unflatten_dict(leaves),
      used_keys=[key[strip:] for key in used],
      unused_keys=[key[strip:] for key in file_state if key not in plan],
      not_loaded=[key[strip:] for key in plan if key not in file_state])
