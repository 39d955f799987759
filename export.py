"""Export a checkpoint to ONNX (network + decoder, TAO's names):
python export.py --config=configs/bike.py --config.export.checkpoint=CKPT --config.export.onnx_file=model.onnx
"""

from centerpose_jax import host_memory

host_memory.use_host_memory_settings(__name__)  # first: it may restart the program, with huge pages

from centerpose_jax import cli  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = cli.define_config_flag()


def main(config):
  from centerpose_jax.tasks import export  # pylint: disable=g-import-not-at-top
  export.run(config)


if __name__ == "__main__":
  cli.run(main, "export", _CONFIG)
