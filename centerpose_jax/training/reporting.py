"""What a training run reports: TensorBoard event files, TAO-style status.json lines, console messages.

Only process 0 of a multi-process job writes (the others get a disabled log). Files, all in the training
folder (`checkpoint.train_dir`):
  tensorboard/events.*   scalars `train/<name>` per step (every loss term, lr, grad_norm, loss_scale,
                         samples_per_second), `val/<name>` per validation, images `val/prediction_<i>`
  status.json            one JSON object per line, as TAO's status logger: date, time, status (STARTED,
                         RUNNING, SUCCESS, FAILURE), verbosity, message, and per epoch `epoch`, `max_epoch`
                         and `kpi` {train_loss, val_3DIoU, val_2DMPE}
"""

import datetime
import json
import math
import pathlib
from typing import Mapping, Optional, Sequence

import numpy as np

TENSORBOARD_SUBDIR = "tensorboard"
STATUS_FILE = "status.json"


class TrainingLog:
  """TensorBoard + status.json writer for one run (a no-op when `enabled` is False).

  Args:
    directory: the training folder.
    enabled: write files (True on process 0).
    purge_step: on resume, the step the run continues from; TensorBoard discards events logged after it by
      the interrupted run, so curves do not double back.
  """

  def __init__(self, directory, enabled: bool = True, purge_step: Optional[int] = None):
    self.directory = pathlib.Path(directory)
    self.enabled = enabled
    self._writer = None
    if enabled:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self.directory.mkdir(parents=True, exist_ok=True)
      self._writer = SummaryWriter(str(self.directory / TENSORBOARD_SUBDIR), purge_step=purge_step)

  def scalars(self, step: int, values: Mapping[str, float], prefix: str) -> None:
    """Writes `values` as `<prefix>/<name>` at `step`; NaN and infinite values are left out."""
    if self._writer is None:
      return
    for name, value in values.items():
      if math.isfinite(float(value)):
        self._writer.add_scalar(f"{prefix}/{name}", float(value), step)

  def images(self, step: int, images_bgr: Sequence[np.ndarray], prefix: str) -> None:
    """Writes uint8 BGR [H, W, 3] images as `<prefix>_<i>` at `step`."""
    if self._writer is None:
      return
    for index, image in enumerate(images_bgr):
      self._writer.add_image(f"{prefix}_{index}", np.ascontiguousarray(image[..., ::-1]), step,
                             dataformats="HWC")

  def status(self, status: str, message: str, **fields) -> None:
    """Appends one TAO status line (`fields` such as epoch, max_epoch, kpi; NaN / inf numbers become null)."""
    if not self.enabled:
      return
    now = datetime.datetime.now()
    record = {"date": now.strftime("%-m/%-d/%Y"), "time": now.strftime("%H:%M:%S"), "status": status,
              "verbosity": "INFO" if status != "FAILURE" else "ERROR", "message": message, **fields}
    self.directory.mkdir(parents=True, exist_ok=True)
    with open(self.directory / STATUS_FILE, "a", encoding="utf-8") as f:
      f.write(json.dumps(_finite_or_none(record)) + "\n")

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _finite_or_none(value):
  """`value` with every non-finite float (nested in dicts) replaced by None, numpy scalars as Python numbers."""
  if isinstance(value, dict):
    return {key: _finite_or_none(item) for key, item in value.items()}
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  if isinstance(value, np.integer):
    return int(value)
  return value


def read_status(directory) -> list:
  """The status.json records of a training folder, oldest first ([] when there is none)."""
  path = pathlib.Path(directory) / STATUS_FILE
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
