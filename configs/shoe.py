"""Objectron `shoe`: python train.py --config=configs/shoe.py --config.dataset.train_data=DIR/train"""

from configs import default


def get_config():
  return default.get_category_config("shoe")
