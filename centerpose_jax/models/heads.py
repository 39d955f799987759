"""CenterPose's seven output heads, with TAO's structure, key indices and initialisation.

Outputs are raw logits (sigmoid is applied by the loss and the decoder).
"""

import flax.linen as nn

from centerpose_jax.models import layers

# Head name -> output channels, in TAO's order.
HEADS = {"hm": 1, "wh": 2, "hps": 16, "reg": 2, "hm_hp": 8, "hp_offset": 2, "scale": 3}
# With the ConvGRU on, the GRU step whose hidden state feeds each head.
GRU_STEP_OF_HEAD = {"hm": 0, "wh": 0, "reg": 0, "hm_hp": 1, "hp_offset": 1, "hps": 1, "scale": 2}
# Final bias of the heatmap heads (TAO's test `'hm' in head` covers both hm and hm_hp): sigmoid(-2.19) ~ 0.1.
HEATMAP_BIAS = -2.19


def is_heatmap(head: str) -> bool:
  """Whether TAO initialises `head` as a heatmap (final bias -2.19, other biases at PyTorch's default)."""
  return "hm" in head


def group_norm_groups(channels: int) -> int:
  """TAO's `group_norm`: 32 groups when channels % 32 == 0, else 16."""
  return 32 if channels % 32 == 0 else 16


class Head(nn.Module):
  """TAO's head Sequential: "0" conv 3x3 -> head_conv (bias), ["1" GroupNorm], ReLU, last conv -> classes.

  The GroupNorm (eps 1e-5) is present only with the ConvGRU; the last conv (kernel `final_kernel`) is then
  named "3", else "2". Heatmap heads get the final bias -2.19; the other heads zero biases in both convs.

  Attributes:
    classes: output channels.
    head_conv: hidden channels (> 0).
    final_kernel: kernel size of the last conv (padding final_kernel // 2).
    use_group_norm: whether "1" is a GroupNorm.
    heatmap: TAO's heatmap initialisation.
    defs: the layer constructors (convs, GroupNorm).
  """
  classes: int
  head_conv: int
  final_kernel: int = 1
  use_group_norm: bool = True
  heatmap: bool = False
  defs: layers.ModuleDefs = layers.ModuleDefs()

  @nn.compact
  def __call__(self, x):
    """x: [B, H, W, C] -> [B, H, W, classes] in the compute dtype."""
    zeros = nn.initializers.zeros
    x = self.defs.conv(self.head_conv, 3, padding=1, bias_init=None if self.heatmap else zeros, name="0")(x)
    if self.use_group_norm:
      x = self.defs.group_norm(num_groups=group_norm_groups(self.head_conv), name="1")(x)
    x = nn.relu(x)
    return final_conv(self.defs, self.classes, self.final_kernel, self.heatmap,
                      "3" if self.use_group_norm else "2")(x)


def final_conv(defs: layers.ModuleDefs, classes: int, kernel_size: int, heatmap: bool, name: str) -> nn.Module:
  """A head's last conv; also the whole head when head_conv <= 0 (TAO then names it after the head)."""
  bias_init = nn.initializers.constant(HEATMAP_BIAS) if heatmap else nn.initializers.zeros
  return defs.conv(classes, kernel_size, padding=kernel_size // 2, bias_init=bias_init, name=name)
