"""Inference: decoding of the head maps, post-processing to image pixels, PnP, drawing and JSON output."""

from centerpose_jax.inference.camera import camera_for_image
from centerpose_jax.inference.camera import camera_from_config
from centerpose_jax.inference.decode import decode
from centerpose_jax.inference.detection import Detection
from centerpose_jax.inference.detection import Pose
from centerpose_jax.inference.draw import draw_detections
from centerpose_jax.inference.output import prediction_record
from centerpose_jax.inference.output import write_prediction_json
from centerpose_jax.inference.pnp import solve_pnp
from centerpose_jax.inference.postprocess import postprocess_detections
from centerpose_jax.inference.postprocess import soft_nms
from centerpose_jax.inference.postprocess import to_image_pixels
