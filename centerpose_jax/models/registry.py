"""The backbones: every value of `model.backbone.model_type`, in one table.

The config's validation, the model factory (`centerpose.create_model`), the checkpoint converter and the tools
take their names from `BACKBONES`. A name starting with "_" is a test network (as flax's examples register
`_ResNet1`): `TINY` selects `tiny.TinyCenterPose`, which compiles in seconds, for tests and smoke runs of the
whole pipeline; it is not a pose network and has no TAO counterpart.
"""

import dataclasses
from typing import Dict, Tuple

from centerpose_jax.models import fan

DLA, FAN, TEST = "dla", "fan", "test"  # families
TINY = "_tiny"


@dataclasses.dataclass(frozen=True)
class Backbone:
  """One value of `model.backbone.model_type`.

  Attributes:
    name: the config value.
    family: DLA (DLA34 + DLAUp + IDAUp), FAN (FAN hybrid + IDAUp) or TEST (a whole stand-in network).
    width_scalable: `model.backbone.width_multiplier` applies (DLA34 only; not in TAO).
    imagenet_weights: where the ImageNet weights of `model.use_pretrained` come from ("" for none).
    downloadable: those weights are downloaded automatically (`convert.pretrained`) when no path is set.
  """
  name: str
  family: str
  width_scalable: bool = False
  imagenet_weights: str = ""
  downloadable: bool = False


_FAN_IMAGENET = "the NGC model pretrained_fan_classification_nvimagenet, e.g. fan_small_hybrid_nvimagenet.pth"
BACKBONES: Dict[str, Backbone] = {backbone.name: backbone for backbone in (
    Backbone("DLA34", DLA, width_scalable=True, downloadable=True,
             imagenet_weights="dla34-ba72cf86.pth from http://dl.yf.io/dla/models/imagenet/ (or timm's dla34.in1k "
                              "weights)"),
    *(Backbone(name, FAN, imagenet_weights=_FAN_IMAGENET) for name in fan.FAN_ARCHS),
    Backbone(TINY, TEST),
)}
# The backbones of TAO's networks (checkpoints, converters).
TAO_BACKBONES: Tuple[str, ...] = tuple(name for name, backbone in BACKBONES.items() if backbone.family != TEST)


def backbone(name: str) -> Backbone:
  """The registry entry of `name`; raises ValueError listing the known names."""
  if name not in BACKBONES:
    raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(BACKBONES)}")
  return BACKBONES[name]
