"""Objectron `cereal_box`: python train.py --config=configs/cereal_box.py --config.dataset.train_data=DIR/train"""

from configs import default


def get_config():
  return default.get_category_config("cereal_box")
