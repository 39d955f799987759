"""Evaluate a checkpoint with the Objectron metrics:
python evaluate.py --config=configs/bike.py --config.evaluate.checkpoint=CKPT --config.dataset.test_data=DIR/test
"""

from centerpose_jax import host_memory

host_memory.use_host_memory_settings(__name__)  # first: it may restart the program, with huge pages

from centerpose_jax import cli  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = cli.define_config_flag()


def main(config):
  from centerpose_jax.tasks import evaluate  # pylint: disable=g-import-not-at-top
  evaluate.run(config)


if __name__ == "__main__":
  cli.run(main, "evaluate", _CONFIG)
