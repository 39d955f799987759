"""Mixed precision (`train.precision`): the model's compute dtype and the loss scaling that goes with it.

Parameters and optimizer state always stay float32; only the forward/backward computation runs in the
compute dtype. fp16 uses jmp's dynamic loss scaling: the loss is multiplied by the scale before
differentiation, the gradients divided by it, and a step whose gradients are not finite is skipped (the
scale halves); the scale doubles after `DYNAMIC_SCALE_PERIOD` finite steps in a row. fp32 and bf16 need no
scaling (jmp's no-op scale).
"""

import jax.numpy as jnp
import jmp

COMPUTE_DTYPES = {"fp32": jnp.float32, "bf16": jnp.bfloat16, "fp16": jnp.float16}
INITIAL_FP16_SCALE = 2.0 ** 15
DYNAMIC_SCALE_PERIOD = 2000


def compute_dtype(precision: str):
  """The model's compute dtype for `train.precision` ("fp32", "bf16" or "fp16")."""
  if precision not in COMPUTE_DTYPES:
    raise ValueError(f"train.precision: got {precision!r}, expected one of {', '.join(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[precision]


def initial_loss_scale_state(precision: str) -> dict:
  """The loss-scale state a run starts with: {"scale": float32 [], "counter": int32 []}.

  The same two arrays exist for every precision (scale 1 and counter 0 without dynamic scaling), so train
  states and checkpoints have one structure.
  """
  compute_dtype(precision)  # validates the name
  scale = INITIAL_FP16_SCALE if precision == "fp16" else 1.0
  return {"scale": jnp.asarray(scale, jnp.float32), "counter": jnp.zeros([], jnp.int32)}


def loss_scale(precision: str, state: dict):
  """The jmp loss scale for `precision` holding `state`: dynamic for fp16, jmp's no-op scale otherwise."""
  if precision == "fp16":
    return jmp.DynamicLossScale(state["scale"], state["counter"], period=DYNAMIC_SCALE_PERIOD)
  return jmp.NoOpLossScale()


def loss_scale_state(scale, previous: dict) -> dict:
  """The state of jmp loss scale `scale` (`previous` unchanged when the scale is the no-op one)."""
  if isinstance(scale, jmp.DynamicLossScale):
    return {"scale": scale.loss_scale, "counter": scale.counter}
  return previous
