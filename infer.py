"""Run CenterPose on images or a video:
python infer.py --config=configs/bike.py --config.inference.checkpoint=CKPT --config.dataset.inference_data=DIR
"""

from centerpose_jax import config as config_lib

_CONFIG = config_lib.define_config_flag()


def main(config):
  from centerpose_jax.inference import run  # pylint: disable=g-import-not-at-top
  run.infer(config)


if __name__ == "__main__":
  config_lib.run(main, "infer", _CONFIG)
