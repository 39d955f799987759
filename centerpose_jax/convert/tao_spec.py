"""TAO experiment spec (YAML) -> our ConfigDict.

A TAO CenterPose spec (`experiment_specs/train.yaml` and friends) uses the same section and field names as
`configs/default.py`, so the mapping is a recursive overlay onto the defaults of the spec's
`dataset.category` (`configs/<category>.py`: chair and bottle get TAO's 4 and 12 symmetry copies unless the
spec sets `dataset.num_symmetry`), except that a spec without `model.backbone.model_type` gets TAO's default
network, fan_small, so a TAO spec means what it meant in TAO. Two TAO names are renamed (`dataset._eig_val` / `_eig_vec` -> `eig_val` /
`eig_vec`), TAO's common `wandb` section is accepted and ignored with a warning, OmegaConf interpolations
(`checkpoint_interval: ${train.validation_interval}`, `"${results_dir}/train"`) are resolved against the
resulting config, and every other key we do not know is reported: the whole list, as one error.
"""

import json
import logging
import re
from typing import Any, Dict, List

import yaml
from ml_collections import config_dict

from configs import default as default_config

from centerpose_jax import errors

_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")
# TAO's schema default for `model.backbone.model_type`; a spec that leaves it out means this network (our
# Python configs default to DLA34, see docs/differences-from-tao.md).
TAO_DEFAULT_BACKBONE = "fan_small"
RENAMED = {("dataset", "_eig_val"): ("dataset", "eig_val"), ("dataset", "_eig_vec"): ("dataset", "eig_vec")}
IGNORED_SECTIONS = ("wandb",)


class SpecError(errors.CenterPoseError, ValueError):
  """A TAO spec with keys or values that do not map onto the config."""


def _overlay(target: config_dict.ConfigDict, spec: Dict[str, Any], prefix: tuple, problems: List[str],
             deferred: List[tuple]):
  """Writes `spec` into `target`; values with `${...}` are appended to `deferred` as (target, key, dotted,
  value) for `_resolve_interpolations`."""
  for key, value in spec.items():
    path = prefix + (key,)
    if path in RENAMED:
      *_, key = RENAMED[path]
    if len(path) == 1 and key in IGNORED_SECTIONS:
      logging.warning("TAO spec section %r is not supported and is ignored", key)
      continue
    dotted = ".".join(part if isinstance(part, str) and part.isidentifier() else json.dumps(str(part))
                      for part in path)
    if key not in target:
      problems.append(f"{dotted}: unknown key (not a TAO CenterPose option)")
      continue
    current = target[key]
    if isinstance(current, config_dict.ConfigDict):
      if not isinstance(value, dict):
        problems.append(f"{dotted}: expected a section (mapping), got {value!r}")
      else:
        _overlay(current, value, path, problems, deferred)
      continue
    if isinstance(value, dict):
      problems.append(f"{dotted}: expected a value, got a section")
      continue
    if isinstance(value, str) and _INTERPOLATION.search(value):
      deferred.append((target, key, dotted, value))
      continue
    _assign(target, key, dotted, value, problems)


def _assign(target, key, dotted, value, problems):
  """target[key] = value, with YAML's strings and lists turned into the field's float and tuple types."""
  if isinstance(target[key], float) and isinstance(value, str):
    value = _yaml_float(value)  # PyYAML reads `6e-05` (no dot) as a string
  if isinstance(value, list):
    value = _as_tuple(value)  # sequences are tuples in the config (overridable on the command line)
  try:
    target[key] = value
  except (TypeError, ValueError) as error:
    problems.append(f"{dotted}: {error}")


def _lookup(config: config_dict.ConfigDict, dotted: str):
  node = config
  for part in dotted.split("."):
    if not isinstance(node, config_dict.ConfigDict) or part not in node:
      raise KeyError(dotted)
    node = node[part]
  return node


def _resolve_interpolations(config: config_dict.ConfigDict, deferred: List[tuple], problems: List[str]):
  """Assigns the deferred `${a.b}` values: a value that is one reference takes the referenced field's value
  (any type); references inside a longer string are replaced by their text. References may chain."""
  pending = list(deferred)
  while pending:
    unresolved = []
    waiting = {dotted for _, _, dotted, _ in pending}
    for target, key, dotted, text in pending:
      if waiting & set(_INTERPOLATION.findall(text)):
        unresolved.append((target, key, dotted, text))  # refers to a value not resolved yet
        continue
      try:
        whole = _INTERPOLATION.fullmatch(text)
        value = _lookup(config, whole.group(1)) if whole else _INTERPOLATION.sub(
            lambda match: str(_lookup(config, match.group(1))), text)
      except KeyError as missing:
        problems.append(f"{dotted}: {text!r} refers to {missing.args[0]}, which is not a config field")
        continue
      _assign(target, key, dotted, value, problems)
    if len(unresolved) == len(pending):
      problems.extend(f"{dotted}: {text!r}: circular interpolation" for _, _, dotted, text in unresolved)
      return
    pending = unresolved


def _as_tuple(value):
  return tuple(_as_tuple(item) if isinstance(item, list) else item for item in value)


def _yaml_float(text: str):
  try:
    return float(text)
  except ValueError:
    return text  # left for the assignment to report


def spec_to_config(spec: Dict[str, Any]) -> config_dict.ConfigDict:
  """Overlays a parsed TAO spec onto the defaults of its `dataset.category` (`configs/default.py`'s
  `get_category_config`); raises SpecError listing every unknown key."""
  spec = spec or {}
  dataset = spec.get("dataset") if isinstance(spec.get("dataset"), dict) else {}
  category = dataset.get("category")
  config = default_config.get_category_config(category) if isinstance(category, str) else default_config.get_config()
  config.model.backbone.model_type = TAO_DEFAULT_BACKBONE
  problems: List[str] = []
  deferred: List[tuple] = []
  _overlay(config, spec, (), problems, deferred)
  _resolve_interpolations(config, deferred, problems)
  if problems:
    raise SpecError("TAO spec does not map onto the config:\n" + "\n".join(f"  - {p}" for p in problems))
  forced = default_config.CATEGORY_SYMMETRY.get(config.dataset.category)
  if forced and config.dataset.num_symmetry != forced:
    logging.warning("dataset.num_symmetry=%s for category %r: TAO ignores the spec's value and uses %s; this config "
                    "uses %s as written (remove the line for %s)", config.dataset.num_symmetry,
                    config.dataset.category, forced, config.dataset.num_symmetry, forced)
  return config


def load_tao_spec(path: str) -> config_dict.ConfigDict:
  """Reads a TAO experiment spec YAML file into a ConfigDict (see `spec_to_config`); raises SpecError naming
  the file and the line of a YAML syntax error."""
  try:
    with open(path, encoding="utf-8") as f:
      spec = yaml.safe_load(f)
  except yaml.YAMLError as error:
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "file"
    problem = " ".join(str(getattr(error, "problem", None) or error).split())
    raise SpecError(f"{path}: {where}: not valid YAML ({problem})") from None
  except (OSError, UnicodeDecodeError) as error:
    raise SpecError(f"{path}: file: cannot read ({error})") from None
  if spec is not None and not isinstance(spec, dict):
    raise SpecError(f"{path}: a TAO spec is a mapping of sections, got {type(spec).__name__}")
  try:
    return spec_to_config(spec)
  except SpecError as error:
    raise SpecError(f"{path}: {error}") from None
