"""Run CenterPose on images or a video:
python infer.py --config=configs/bike.py --config.inference.checkpoint=CKPT --config.dataset.inference_data=DIR
"""

from centerpose_jax import host_memory

host_memory.use_host_memory_settings(__name__)  # first: it may restart the program, with huge pages

from centerpose_jax import cli  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = cli.define_config_flag()


def main(config):
  from centerpose_jax.tasks import infer  # pylint: disable=g-import-not-at-top
  infer.run(config)


if __name__ == "__main__":
  cli.run(main, "infer", _CONFIG)
