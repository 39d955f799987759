"""Export a checkpoint to ONNX (network + decoder, TAO's names):
python export.py --config=configs/bike.py --config.export.checkpoint=CKPT --config.export.onnx_file=model.onnx
"""

from centerpose_jax import config as config_lib

_CONFIG = config_lib.define_config_flag()


def main(config):
  from centerpose_jax import export  # pylint: disable=g-import-not-at-top
  export.run_export(config)


if __name__ == "__main__":
  config_lib.run(main, "export", _CONFIG)
