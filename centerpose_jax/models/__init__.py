"""CenterPose networks: `create_model(config)` builds the model named by `model.backbone.model_type`."""

from centerpose_jax.models.centerpose import CenterPose
from centerpose_jax.models.centerpose import create_model
from centerpose_jax.models.heads import HEADS
