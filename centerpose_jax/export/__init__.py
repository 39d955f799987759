"""ONNX export (TAO's graph and names), onnxruntime execution of exported files, encryption at rest.

Modules: `onnx` (jax2onnx export, fix-ups, verification), `task` (export.py's `run_export`), `runtime`
(`OnnxPredictor`), `encryption`. Importing the package stays light (no jax2onnx) so `runtime` loads fast.
"""


def run_export(config):
  """export.py's task: see `centerpose_jax.export.task.run_export`."""
  from centerpose_jax.export import task  # pylint: disable=g-import-not-at-top
  return task.run_export(config)
