"""Which network a set of weights belongs to, and one clear message when it is not the configured one.

An *architecture* is the dict of the `model` options that decide the weights' shapes (ARCHITECTURE_FIELDS,
e.g. {"model_type": "DLA34", "width_multiplier": 0.125, "head_conv": 32, ...}). Training checkpoints store it
in their meta (`checkpoint.META_ITEM`, key "model"); for weights without it (converted TAO checkpoints, older
checkpoints) `infer_architecture` reads the backbone, width and head width off the weights' shapes.
"""

from typing import Any, Dict, List, Mapping, Optional

import jax
import jax.numpy as jnp

from centerpose_jax import errors
from centerpose_jax.models import dla
from centerpose_jax.models.centerpose import INPUT_DIVISOR

# model options that change the shapes of the weights: (name in the architecture dict, config path).
ARCHITECTURE_FIELDS = (("model_type", "model.backbone.model_type"),
                       ("width_multiplier", "model.backbone.width_multiplier"),
                       ("head_conv", "model.head_conv"), ("use_convGRU", "model.use_convGRU"),
                       ("final_kernel", "model.final_kernel"), ("last_level", "model.last_level"),
                       ("down_ratio", "model.down_ratio"), ("out_channel", "model.out_channel"))
_SHOWN_DIFFERENCES = 5


class ArchitectureMismatchError(errors.CenterPoseError, ValueError):
  """Weights whose shapes do not fit the configured model; the message names both architectures."""


def _get(config, path: str):
  node = config
  for part in path.split("."):
    node = node[part]
  return node


def architecture(config) -> Dict[str, Any]:
  """The architecture dict (see the module docstring) of the whole `config`."""
  return {name: _get(config, path) for name, path in ARCHITECTURE_FIELDS}


def infer_architecture(variables: Mapping) -> Dict[str, Any]:
  """Backbone (`model_type`), DLA34 `width_multiplier` and `head_conv` read off the shapes of `variables`
  ({"params", ...}; arrays or anything with `.shape`); only the fields it can tell (possibly none)."""
  params = variables.get("params", {})
  base = params.get("base", {}) if isinstance(params, Mapping) else {}
  found: Dict[str, Any] = {}
  if "cls_token" in base:
    from centerpose_jax.models import fan  # pylint: disable=g-import-not-at-top
    embed_dim = base["cls_token"].shape[-1]
    found.update({"model_type": name for name, arch in fan.FAN_ARCHS.items() if arch.embed_dim == embed_dim})
  elif "base_layer" in base:
    found["model_type"] = "DLA34"
    found["width_multiplier"] = base["base_layer"]["0"]["kernel"].shape[-1] / dla.DLA34_CHANNELS[0]
  head = params.get("hm", {}) if isinstance(params, Mapping) else {}
  first = head.get("0", {}) if isinstance(head, Mapping) else {}
  if "kernel" in first and len(head) > 1:
    found["head_conv"] = int(first["kernel"].shape[-1])
  return found


def describe(arch: Mapping[str, Any]) -> str:
  """'DLA34 (width_multiplier 0.125, head_conv 32)' for an architecture dict (model_type first)."""
  details = [f"{name} {value:g}" if isinstance(value, float) else f"{name} {value}"
             for name, value in arch.items() if name != "model_type"]
  text = str(arch.get("model_type", "an unknown backbone"))
  return f"{text} ({', '.join(details)})" if details else text


def _shapes(tree) -> Dict[str, tuple]:
  return {jax.tree_util.keystr(path): tuple(leaf.shape)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0] if hasattr(leaf, "shape")}


def expected_shapes(model) -> Dict[str, Any]:
  """{"params", "batch_stats"} of `jax.ShapeDtypeStruct`s of a CenterPose-like `model` (traced, nothing run)."""
  size = INPUT_DIVISOR * 2
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False))
  return {"params": shapes["params"], "batch_stats": shapes.get("batch_stats", {})}


def shape_differences(variables: Mapping, expected: Mapping) -> List[str]:
  """Each leaf of `variables` ({"params", "batch_stats"}) missing, extra or misshaped against `expected`,
  parameters before BatchNorm statistics."""
  got = _shapes({"params": variables["params"], "batch_stats": variables.get("batch_stats", {})})
  want = _shapes(expected)
  problems = [f"missing {key} {shape}" for key, shape in want.items() if key not in got]
  problems += [f"unexpected {key} {shape}" for key, shape in got.items() if key not in want]
  problems += [f"{key}: shape {got[key]}, the model needs {shape}" for key, shape in want.items()
               if key in got and got[key] != shape]
  return sorted(problems, key=lambda problem: "['params']" not in problem)  # parameters first


def check_weights_fit(variables: Mapping, expected: Mapping, source: str, configured: Mapping[str, Any],
                      stored: Optional[Mapping[str, Any]] = None) -> None:
  """Raises ArchitectureMismatchError when `variables` do not have the shapes `expected`.

  Args:
    variables: {"params", "batch_stats"} arrays (or shape structs, e.g. from a checkpoint's metadata).
    expected: the same of the model that will use them (`expected_shapes(model)`).
    source: the checkpoint's path, for the message.
    configured: the configured architecture (`architecture(config)`).
    stored: the architecture the checkpoint's meta records, when it has one (else it is inferred).
  """
  problems = shape_differences(variables, expected)
  if not problems:
    return
  held = dict(stored) if stored else infer_architecture(variables)
  differing = {name: value for name, value in held.items() if name in configured and configured[name] != value}
  fix = " ".join(f"--config.{path}={held[name]}" for name, path in ARCHITECTURE_FIELDS if name in differing)
  shown = problems[:_SHOWN_DIFFERENCES] + ([f"... {len(problems) - _SHOWN_DIFFERENCES} more"]
                                          if len(problems) > _SHOWN_DIFFERENCES else [])
  wanted = {name: configured[name] for name in (held or configured) if name in configured}
  raise ArchitectureMismatchError(
      f"{source}: the checkpoint holds a {describe(held) if held else 'network of unknown architecture'}, "
      f"the config asks for {describe(wanted) if wanted else 'another network'}"
      + (f"; set {fix}" if fix else "") + "\n  " + "\n  ".join(shown))
