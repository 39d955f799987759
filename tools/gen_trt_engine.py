"""Build a TensorRT engine from the exported ONNX with trtexec, from the config's `gen_trt_engine` section.

  python tools/gen_trt_engine.py --config=configs/bike.py --config.results_dir=results/bike \
      --config.gen_trt_engine.tensorrt.data_type=FP16 --config.gen_trt_engine.tensorrt.max_batch_size=8

Turns TAO-deploy's `gen_trt_engine` options into the `trtexec` command line (precision, input shapes of the
optimisation profile, workspace, INT8 calibration cache, timing cache, engine path; see
centerpose_jax/export/tensorrt.py) and runs it when `trtexec` is on PATH, else prints it. A TAO spec
(`--config=spec.yaml`) works as for the other tasks.
"""

from centerpose_jax import cli

_CONFIG = cli.define_config_flag()


def main(config):
  from centerpose_jax.export import tensorrt  # pylint: disable=g-import-not-at-top
  tensorrt.build_engine(config)


if __name__ == "__main__":
  cli.run(main, "gen_trt_engine", _CONFIG)
