"""ONNX export (TAO's graph and names) and onnxruntime execution of exported files.

Modules: `onnx` (jax2onnx export, fix-ups, verification; files encrypted with `centerpose_jax.encryption`
when a key is set), `task` (export.py's `run_export`), `runtime` (`OnnxPredictor`). Importing the package
stays light (no jax2onnx) so `runtime` loads fast.
"""


def run_export(config):
  """export.py's task: see `centerpose_jax.export.task.run_export`."""
  from centerpose_jax.export import task  # pylint: disable=g-import-not-at-top
  return task.run_export(config)
