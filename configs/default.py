"""Every option of TAO's CenterPose experiment spec, under TAO's names, with TAO's schema defaults.

The schema lives in the package (`centerpose_jax/config.py`: the sections, the defaults, the per-category
values); docs/configuration.md lists every option. Options marked "ours" there do not exist in TAO.

Usage:
  python train.py --config=configs/default.py --config.dataset.train_data=/data/bike/train ...
"""

from centerpose_jax.config import get_category_config  # pylint: disable=unused-import
from centerpose_jax.config import get_config  # pylint: disable=unused-import
