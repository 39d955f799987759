"""Divergence detection: a training loss that keeps growing far above the lowest it has been.

The reference is the running minimum of the mean loss over the last `steps` steps (fewer at the start: the
first step's loss is a reference from the first step on; a mean, so that one easy batch does not set it;
steps above the threshold are left out of it). The loss diverges when every one of `steps` consecutive steps has a loss above
`factor` times that minimum; the first of those steps is the onset. Non-finite losses are left to the
training loop (it stops on them at once in fp32/bf16; fp16 skips those steps).
"""

import collections
import dataclasses
import math
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Divergence:
  """A detected divergence.

  Attributes:
    step: the step (1-based, batches consumed) at which it was detected.
    onset: the first step of the run of steps above the threshold.
    loss: the loss at `step`.
    reference: the running minimum of the windowed mean loss.
    factor, steps: the settings it was detected with.
  """
  step: int
  onset: int
  loss: float
  reference: float
  factor: float
  steps: int

  def __str__(self) -> str:
    return (f"the training loss is diverging: {self.loss:.4g} at step {self.step}, above "
            f"{self.factor:g} x its running minimum {self.reference:.4g} (mean over {self.steps} steps) for "
            f"{self.steps} steps in a row since step {self.onset} (train.divergence_factor, "
            f"train.divergence_steps)")


class DivergenceMonitor:
  """Feed it every step's loss with `update`; it returns a `Divergence` once per episode (it reports again
  only after the loss has come back below the threshold).

  Args:
    factor: how many times the running minimum counts as diverged (> 1).
    steps: the window of the mean and the number of consecutive steps above the threshold (>= 1).
  """

  def __init__(self, factor: float, steps: int):
    self.factor = float(factor)
    self.steps = int(steps)
    self._window = collections.deque(maxlen=self.steps)
    self._reference = math.inf
    self._streak = 0
    self._reported = False

  def update(self, step: int, loss: float) -> Optional[Divergence]:
    """Takes the loss of `step`; returns the Divergence when this step completes one."""
    if not math.isfinite(loss):
      return None
    above = loss > self.factor * self._reference
    self._streak = self._streak + 1 if above else 0
    if not above:
      self._reported = False
      self._window.append(loss)
      self._reference = min(self._reference, sum(self._window) / len(self._window))
    if self._streak >= self.steps and not self._reported:
      self._reported = True
      return Divergence(step=step, onset=step - self._streak + 1, loss=loss, reference=self._reference,
                        factor=self.factor, steps=self.steps)
    return None
