"""TAO experiment spec (YAML) -> our ConfigDict.

A TAO CenterPose spec (`experiment_specs/train.yaml` and friends) uses the same section and field names as
`configs/default.py`, so the mapping is a recursive overlay onto the defaults. Two TAO names are renamed
(`dataset._eig_val` / `_eig_vec` -> `eig_val` / `eig_vec`), TAO's common `wandb` section is accepted and
ignored with a warning, and every other key we do not know is reported: the whole list, as one error.
"""

import json
import logging
from typing import Any, Dict, List

import yaml
from ml_collections import config_dict

from configs import default as default_config

from centerpose_jax import errors

RENAMED = {("dataset", "_eig_val"): ("dataset", "eig_val"), ("dataset", "_eig_vec"): ("dataset", "eig_vec")}
IGNORED_SECTIONS = ("wandb",)


class SpecError(errors.CenterPoseError, ValueError):
  """A TAO spec with keys or values that do not map onto the config."""


def _overlay(target: config_dict.ConfigDict, spec: Dict[str, Any], prefix: tuple, problems: List[str]):
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
        _overlay(current, value, path, problems)
      continue
    if isinstance(value, dict):
      problems.append(f"{dotted}: expected a value, got a section")
      continue
    if isinstance(current, float) and isinstance(value, str):
      value = _yaml_float(value)  # PyYAML reads `6e-05` (no dot) as a string
    if isinstance(current, tuple) and isinstance(value, list):
      value = _as_tuple(value)  # sequences are tuples in the config (overridable on the command line)
    try:
      target[key] = value
    except (TypeError, ValueError) as error:
      problems.append(f"{dotted}: {error}")


def _as_tuple(value):
  return tuple(_as_tuple(item) if isinstance(item, list) else item for item in value)


def _yaml_float(text: str):
  try:
    return float(text)
  except ValueError:
    return text  # left for the assignment to report


def spec_to_config(spec: Dict[str, Any]) -> config_dict.ConfigDict:
  """Overlays a parsed TAO spec onto `configs/default.py`; raises SpecError listing every unknown key."""
  config = default_config.get_config()
  problems: List[str] = []
  _overlay(config, spec or {}, (), problems)
  if problems:
    raise SpecError("TAO spec does not map onto the config:\n" + "\n".join(f"  - {p}" for p in problems))
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
