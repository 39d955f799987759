"""Evaluate a checkpoint with the Objectron metrics:
python evaluate.py --config=configs/bike.py --config.evaluate.checkpoint=CKPT --config.dataset.test_data=DIR/test
"""

from centerpose_jax import config as config_lib

_CONFIG = config_lib.define_config_flag()


def main(config):
  from centerpose_jax.evaluation import run  # pylint: disable=g-import-not-at-top
  run.evaluate(config)


if __name__ == "__main__":
  config_lib.run(main, "evaluate", _CONFIG)
