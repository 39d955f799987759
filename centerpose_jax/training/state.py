"""The training state: everything a step changes, as one pytree that is donated to the step and checkpointed.

`TrainState` holds arrays only (the model and optimizer objects live in the step function), so the same
structure is saved by Orbax and restored into an abstract copy (`jax.eval_shape` of `create_train_state`).
"""

from typing import Any, Tuple

import flax
import flax.struct
import jax
import jax.numpy as jnp
import optax

from centerpose_jax.training import precision as precision_lib


@flax.struct.dataclass
class TrainState:
  """Arrays of a training run.

  Attributes:
    step: int32 [] training batches consumed (an optimizer update happens every grad_accumulation_steps).
    params: float32 model parameters.
    batch_stats: BatchNorm running statistics ({} for a model without BatchNorm).
    opt_state: optax state (float32).
    loss_scale: {"scale": float32 [], "counter": int32 []} (see `precision.initial_loss_scale_state`).
    rng: uint32 [2] base PRNG key of the run; step n uses fold_in(rng, n) for dropout / drop-path.
    skipped_steps: int32 [] batches whose update was skipped because the gradients were not finite (fp16).
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  loss_scale: Any
  rng: jax.Array
  skipped_steps: jax.Array

  def variables(self) -> dict:
    """{"params", "batch_stats"}: what `model.apply` and inference need."""
    return {"params": self.params, "batch_stats": self.batch_stats}


def init_variables(model, rng: jax.Array, input_shape: Tuple[int, ...], sharding=None) -> dict:
  """{"params", "batch_stats"} of `model` initialised from `rng` on a zero input of `input_shape` [B, H, W, 3].

  Runs as one jitted computation (op-by-op initialisation of a large model takes minutes); `sharding`
  (e.g. replicated over the training mesh) places the result. The initializers draw from an "rbg" key
  derived from `rng`: XLA compiles threefry bits for every parameter tensor slowly (about 30 s for DLA34 on
  a CPU) and RngBitGenerator in a few seconds; the weights are still a deterministic function of `rng`.
  """

  def init(rng):
    init_rng = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
    params_rng, dropout_rng = jax.random.split(init_rng)
    variables = model.init({"params": params_rng, "dropout": dropout_rng}, jnp.zeros(input_shape, jnp.float32),
                           train=False)
    return {"params": variables["params"], "batch_stats": variables.get("batch_stats", {})}

  return jax.jit(init, out_shardings=sharding)(rng)


def create_train_state(variables: dict, optimizer: optax.GradientTransformation, rng: jax.Array,
                       precision: str, sharding=None) -> TrainState:
  """A fresh state at step 0 around `variables` ({"params", "batch_stats"}) with a new optimizer state.

  Built by one jitted computation whose outputs are new buffers (the caller's `variables` stay valid when
  the state is later donated), placed by `sharding` (the training step's replicated sharding, so that the
  first step does not compile again for differently placed inputs).

  Args:
    variables: initial (or pretrained) weights.
    optimizer: from `optim.create_optimizer`.
    rng: uint32 [2] key of the run (for dropout / drop-path).
    precision: `train.precision` (its loss-scale state is created here).
    sharding: where the state lives (default: the default device).
  """

  def build(variables, rng):
    params = variables["params"]
    return TrainState(step=jnp.zeros([], jnp.int32), params=params,
                      batch_stats=variables.get("batch_stats", {}), opt_state=optimizer.init(params),
                      loss_scale=precision_lib.initial_loss_scale_state(precision),
                      rng=jnp.asarray(rng, jnp.uint32), skipped_steps=jnp.zeros([], jnp.int32))

  return jax.jit(build, out_shardings=sharding)(variables, rng)


def parameter_count(params) -> int:
  """Number of scalar parameters in a params tree."""
  return sum(int(x.size) for x in jax.tree_util.tree_leaves(params))
