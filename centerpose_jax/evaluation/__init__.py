"""Objectron evaluation: exact 3D IoU, pose metrics, AP and the frame-by-frame evaluator.

The report writer (matplotlib) is `centerpose_jax.evaluation.report.write_report`, imported on its own so
that training's validation does not load matplotlib.
"""

from centerpose_jax.evaluation.box3d import iou_3d
from centerpose_jax.evaluation.box3d import iou_3d_batch
from centerpose_jax.evaluation.evaluator import Evaluator

__all__ = ["Evaluator", "iou_3d", "iou_3d_batch"]
