"""CenterPose's seven output heads, with TAO's structure, key indices and initialisation.

Outputs are raw logits (sigmoid is applied by the loss and the decoder).
"""

from typing import Dict, Sequence, Tuple

import flax.linen as nn
import jax

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

  Called on x it runs the whole head. Heads that read the same map run their first convs as one
  (`apply_heads`): `hidden` is that conv layer, `finish` the rest of the head.

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

  def setup(self):
    self.hidden = self.defs.conv(self.head_conv, 3, padding=1,
                                 bias_init=None if self.heatmap else nn.initializers.zeros, name="0")
    if self.use_group_norm:
      self.norm = self.defs.group_norm(num_groups=group_norm_groups(self.head_conv), name="1")
    self.final = final_conv(self.defs, self.classes, self.final_kernel, self.heatmap,
                            "3" if self.use_group_norm else "2")

  def __call__(self, x):
    """x: [B, H, W, C] -> [B, H, W, classes] in the compute dtype."""
    return self.finish(self.hidden(x))

  def finish(self, hidden, hidden_bias=None):
    """The output of the first conv [B, H, W, head_conv] (before its bias `hidden_bias` [head_conv] is added,
    where that is given) -> [B, H, W, classes]."""
    if self.use_group_norm:
      hidden = self.norm(hidden, hidden_bias)
    elif hidden_bias is not None:
      hidden = hidden + hidden_bias
    return self.final(nn.relu(hidden))


def apply_heads(heads: Dict[str, Head], groups: Sequence[Tuple[jax.Array, Sequence[str]]]) -> Dict[str, jax.Array]:
  """{name: heads[name](x)} for every (x, names) of `groups`, with the first convs of the heads of one group
  run as one convolution on x (`layers.shared_input_conv`: with the ConvGRU, one per GRU step, e.g. 3 x 256
  -> 768 outputs), in the order of `heads`."""
  outputs = {}
  for x, names in groups:
    hidden_outputs = layers.shared_input_conv_unbiased([heads[name].hidden for name in names], x)
    for name, (hidden, bias) in zip(names, hidden_outputs):
      outputs[name] = heads[name].finish(hidden, bias)
  return {name: outputs[name] for name in heads}


def final_conv(defs: layers.ModuleDefs, classes: int, kernel_size: int, heatmap: bool, name: str) -> nn.Module:
  """A head's last conv; also the whole head when head_conv <= 0 (TAO then names it after the head)."""
  bias_init = nn.initializers.constant(HEATMAP_BIAS) if heatmap else nn.initializers.zeros
  return defs.conv(classes, kernel_size, padding=kernel_size // 2, bias_init=bias_init, name=name)
