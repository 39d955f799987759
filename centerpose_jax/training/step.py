"""The data-parallel training step: one `jax.jit` over a `Mesh(("data",))`.

The global batch is sharded along its leading axis over the mesh's "data" axis and the state is replicated,
so XLA runs the forward/backward pass per device and inserts the gradient all-reduce itself. BatchNorm
statistics are computed by the model over the whole (global) batch, exactly as on one device with the
same global batch (tests/training/test_data_parallel.py). The state argument is donated: its buffers are
reused for the new state.
"""

import functools
from typing import Callable, Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import jmp
import optax
from jax.sharding import Mesh

from centerpose_jax import mesh as mesh_lib
from centerpose_jax.training import losses
from centerpose_jax.training import precision as precision_lib
from centerpose_jax.training.state import TrainState

Batch = Mapping[str, jax.Array]
Metrics = Dict[str, jax.Array]


def train_step(state: TrainState, batch: Batch, *, model, optimizer: optax.GradientTransformation,
               loss_weights: Mapping[str, float], precision: str) -> Tuple[TrainState, Metrics]:
  """One batch: forward, loss, backward, (loss-scaled) optimizer update.

  Args:
    state: the current state.
    batch: the loader's arrays (`input` [B, H, W, 3] float32 and the targets of `losses.compute_loss`).
    model: linen module called as `model.apply(variables, x, train=True, mutable=["batch_stats"],
      rngs={"dropout": key})`, returning the seven head maps.
    optimizer: from `optim.create_optimizer`.
    loss_weights: `losses.loss_weights(config.train.loss_config)`.
    precision: `train.precision`. With fp16, a batch whose gradients are not finite leaves params,
      batch_stats and the optimizer state unchanged, halves the loss scale and counts in `skipped_steps`.

  Returns:
    (new state, metrics): metrics holds `loss` and every `<head>_loss` (float32 scalars), `grad_norm`
    (global norm of the unscaled gradients, before clipping), `grads_finite` (bool), `loss_scale` and
    `skipped_steps` (the run's count so far).
  """
  scale = precision_lib.loss_scale(precision, state.loss_scale)
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def scaled_loss(params):
    heads, updates = model.apply({"params": params, "batch_stats": state.batch_stats}, batch["input"],
                                 train=True, mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    loss, stats = losses.compute_loss(heads, batch, loss_weights)
    return scale.scale(loss), (stats, updates.get("batch_stats", {}))

  grads, (stats, batch_stats) = jax.grad(scaled_loss, has_aux=True)(state.params)
  grads = scale.unscale(grads)
  grads_finite = jmp.all_finite(grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  if precision == "fp16":  # skip the update of a non-finite step
    params, batch_stats, opt_state = jmp.select_tree(
        grads_finite, (params, batch_stats, opt_state), (state.params, state.batch_stats, state.opt_state))
  new_scale = scale.adjust(grads_finite)
  new_state = state.replace(
      step=state.step + 1, params=params, batch_stats=batch_stats, opt_state=opt_state,
      loss_scale=precision_lib.loss_scale_state(new_scale, state.loss_scale),
      skipped_steps=state.skipped_steps + jnp.logical_not(grads_finite).astype(jnp.int32))
  metrics = dict(stats, grad_norm=optax.tree.norm(grads), grads_finite=grads_finite,
                 loss_scale=new_state.loss_scale["scale"], skipped_steps=new_state.skipped_steps)
  return new_state, metrics


def make_train_step(model, optimizer: optax.GradientTransformation, loss_weights: Mapping[str, float],
                    precision: str, mesh: Mesh) -> Callable[[TrainState, Batch], Tuple[TrainState, Metrics]]:
  """`train_step` jitted over `mesh`: state replicated and donated, batch sharded along "data".

  The returned function runs the step under `jax.transfer_guard("disallow")` (as big_vision's trainer): its
  arguments must already be on the mesh (`mesh.shard_batch`, `mesh.replicate`), so an implicit host-to-device
  copy (a numpy batch, a Python scalar) or device-to-host read inside the step raises instead of silently
  stalling every step. The state passed in is donated: its buffers are invalid after the call.
  """
  step = functools.partial(train_step, model=model, optimizer=optimizer, loss_weights=dict(loss_weights),
                           precision=precision)
  replicated = mesh_lib.replicated_sharding(mesh)
  jitted = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(replicated, replicated), donate_argnums=0)

  def guarded_step(state: TrainState, batch: Batch) -> Tuple[TrainState, Metrics]:
    with jax.transfer_guard("disallow"):
      return jitted(state, batch)

  guarded_step.lower = jitted.lower  # ahead-of-time compilation (bench/train_step_profile.py)
  guarded_step.trace = jitted.trace  # lowering for another platform (tests/training/test_precision.py)
  return guarded_step
