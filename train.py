"""Train CenterPose: python train.py --config=configs/bike.py --config.dataset.train_data=DIR/train

Any config field can be overridden (--config.train.num_epochs=5); --config may also be a TAO spec (.yaml).
"""

from centerpose_jax import host_memory

host_memory.use_host_memory_settings(__name__, keep_freed_memory=True)  # first: it may restart the program

from centerpose_jax import cli  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

_CONFIG = cli.define_config_flag()


def main(config):
  from centerpose_jax import distributed  # pylint: disable=g-import-not-at-top
  from centerpose_jax.tasks import train  # pylint: disable=g-import-not-at-top
  with distributed.peer_failure_exits("train.py"):
    train.run(config)


if __name__ == "__main__":
  cli.run(main, "train", _CONFIG)
