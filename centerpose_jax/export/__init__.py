"""ONNX export (TAO's graph and names) and the TensorRT engine command line.

Modules: `onnx_export` (jax2onnx export, fix-ups, verification in onnxruntime; files encrypted with
`centerpose_jax.encryption` when a key is set), `tensorrt` (tools/gen_trt_engine.py's trtexec command). export.py's
task is `centerpose_jax.tasks.export`; exported files are run by `centerpose_jax.inference.onnx_predictor`.
"""
