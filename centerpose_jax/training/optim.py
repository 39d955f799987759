"""The optimizer: TAO's Adam with a multi-step learning rate, global-norm clipping and gradient accumulation.

TAO trains with `torch.optim.Adam(lr)` (default betas and eps, no weight decay), `MultiStepLR(lr_steps,
lr_decay)` stepped once per epoch, and Lightning's gradient-norm clipping at `clip_grad_val`. Here the same
schedule is an optax piecewise-constant schedule over optimizer steps: the learning rate of every update in
epoch e (0-based) is lr * lr_decay ** (number of lr_steps <= e). With `grad_accumulation_steps` N > 1,
`optax.MultiSteps` averages the gradients of N batches and updates once, and the schedule counts those
updates (epoch boundaries are converted with `optimizer_steps_before_epoch`).
"""

from typing import Sequence

import optax


def optimizer_steps_before_epoch(epoch: int, batches_per_epoch: int, accumulation_steps: int = 1) -> int:
  """Optimizer updates completed before (0-based) `epoch` starts: floor(epoch * batches / N)."""
  return (epoch * batches_per_epoch) // accumulation_steps


def learning_rate_schedule(lr: float, lr_steps: Sequence[int], lr_decay: float, batches_per_epoch: int,
                           accumulation_steps: int = 1) -> optax.Schedule:
  """MultiStepLR over optimizer-update counts.

  Args:
    lr: initial learning rate.
    lr_steps: epochs (TAO's milestones) from which the rate is multiplied by `lr_decay` once more.
    lr_decay: the factor.
    batches_per_epoch: training batches (global, per process the same) in one epoch.
    accumulation_steps: batches per optimizer update.

  Returns:
    schedule(count) = learning rate of the update that follows `count` earlier updates.
  """
  boundaries = {}
  for epoch in lr_steps:
    boundary = optimizer_steps_before_epoch(int(epoch), batches_per_epoch, accumulation_steps)
    boundaries[boundary] = boundaries.get(boundary, 1.0) * float(lr_decay)
  return optax.piecewise_constant_schedule(float(lr), boundaries)


def accumulation_steps(train_config) -> int:
  """Batches per optimizer update (`train.grad_accumulation_steps`, default 1)."""
  return int(train_config.get("grad_accumulation_steps", 1))


def schedule_from_config(train_config, batches_per_epoch: int) -> optax.Schedule:
  """`learning_rate_schedule` of the `train` config section."""
  optim = train_config.optim
  return learning_rate_schedule(optim.lr, optim.lr_steps, optim.lr_decay, batches_per_epoch,
                                accumulation_steps(train_config))


def create_optimizer(train_config, batches_per_epoch: int) -> optax.GradientTransformation:
  """The optimizer of the `train` config section (`optim.*`, `clip_grad_val`, `grad_accumulation_steps`).

  Clipping (`clip_grad_val` > 0) acts on the (accumulated, averaged) gradient before Adam, as Lightning.
  """
  parts = []
  if train_config.clip_grad_val > 0:
    parts.append(optax.clip_by_global_norm(float(train_config.clip_grad_val)))
  parts.append(optax.adam(schedule_from_config(train_config, batches_per_epoch)))
  optimizer = optax.chain(*parts)
  accumulation = accumulation_steps(train_config)
  if accumulation > 1:
    optimizer = optax.MultiSteps(optimizer, every_k_schedule=accumulation).gradient_transformation()
  return optimizer
