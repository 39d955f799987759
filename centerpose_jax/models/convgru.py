"""TAO CenterPose's ConvGRU: one convolutional GRU cell run for 3 steps on the same input.

Its three hidden states feed three groups of heads (sequential feature association). TAO's zero bias
tensors `br, bz, bin, bhn` are not parameters and are dropped; unlike TAO's module, any input size works.
"""

from typing import List

import flax.linen as nn
import jax.numpy as jnp

from centerpose_jax.models import layers

GRU_STEPS = 3


class ConvGRUCell(nn.Module):
  """GRU cell with 3x3 convolutions: `Wir`, `Wiz`, `Win` (with bias) on x, `Whr`, `Whz`, `Whn` (no bias) on h.

  Per step, from h0 = 0 and the same x every step:
    r = sigmoid(Wir x + Whr h), z = sigmoid(Wiz x + Whz h), n = tanh(Win x + r * Whn h),
    h' = (1 - z) * n + z * h.
  The input terms are computed once; the first step skips the h terms (h0 = 0). The three convs on x run as
  one convolution (features -> 3 * features), and so do the three on h at each step
  (`layers.shared_input_conv`; each conv keeps its own parameters).

  Attributes:
    features: hidden channels (64 for DLA34, 128 for FAN).
    defs: the layer constructors (its convs).
  """
  features: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x) -> List[jnp.ndarray]:
    """x: [B, H, W, C] -> the GRU_STEPS hidden states, each [B, H, W, features]."""
    def conv3x3(name, use_bias):
      return self.defs.conv(self.features, 3, padding=1, use_bias=use_bias, name=name)

    # The three convs on x, and the three on h, each run as one convolution (`layers.shared_input_conv`).
    x_r, x_z, x_n = layers.shared_input_conv([conv3x3(name, True) for name in ("Wir", "Wiz", "Win")], x)
    h_convs = [conv3x3(name, False) for name in ("Whr", "Whz", "Whn")]
    h = (1 - nn.sigmoid(x_z)) * jnp.tanh(x_n)
    states = [h]
    for _ in range(GRU_STEPS - 1):
      h_r, h_z, h_n = layers.shared_input_conv(h_convs, h)
      r = nn.sigmoid(x_r + h_r)
      z = nn.sigmoid(x_z + h_z)
      n = jnp.tanh(x_n + r * h_n)
      h = (1 - z) * n + z * h
      states.append(h)
    return states


class ConvGRU(nn.Module):
  """TAO's `ConvGRU(C, [C], 3, step=3, effective_step=[0, 1, 2])`: a single cell named `cell0`."""
  features: int
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x) -> List[jnp.ndarray]:
    """x: [B, H, W, C] -> [h1, h2, h3], each [B, H, W, features]."""
    return ConvGRUCell(self.features, self.defs, name="cell0")(x)
