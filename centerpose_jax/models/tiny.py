"""A tiny CenterPose-shaped network for tests and smoke runs of the whole pipeline (`registry.TINY`).

It has the real interface (`__call__(x, train)`, BatchNorm statistics, a dropout rng, the seven heads of
`heads.HEADS` at stride 4 with TAO's heatmap bias) but only a few thousand parameters, so its steps compile and
run in well under a second on a CPU. It is not a pose network: no TAO weights fit it.
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from centerpose_jax.models import heads as heads_lib


class TinyCenterPose(nn.Module):
  """Two stride-2 convs (BatchNorm, dropout) then one 1x1 conv per head; outputs float32 [B, H/4, W/4, C].

  `batch_norm=False` gives a model whose samples do not interact (for gradient-accumulation equivalence).
  Like `CenterPose` it resolves its compute `dtype` once into the constructors of its layers.
  """
  width: int = 8
  dropout_rate: float = 0.1
  batch_norm: bool = True
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):
    conv = functools.partial(nn.Conv, dtype=self.dtype)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9, dtype=self.dtype)
    # No bias before BatchNorm (as the real nets): its gradient is zero up to rounding, which Adam would
    # amplify into lr-sized steps of arbitrary sign.
    x = conv(self.width, (3, 3), strides=(2, 2), use_bias=not self.batch_norm)(x)
    if self.batch_norm:
      x = norm()(x)
    x = nn.relu(x)
    x = conv(self.width, (3, 3), strides=(2, 2))(x)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
    outputs = {}
    for name, channels in heads_lib.HEADS.items():
      heatmap = heads_lib.is_heatmap(name)
      bias = nn.initializers.constant(heads_lib.HEATMAP_BIAS) if heatmap else nn.initializers.zeros
      outputs[name] = conv(channels, (1, 1), bias_init=bias, name=name)(x).astype(jnp.float32)
    return outputs
