"""train.py's task, the training loop: `run(config)`, called by train.py after the config has been validated.

  check every label and image of train_data / val_data (stop with the list, or skip with dataset.skip_invalid)
  state <- newest readable checkpoint in the training folder (damaged ones set aside as <step>.damaged)
           | train.resume_training_checkpoint_path
           | train.pretrained_model_path (fresh optimizer; ours, TAO .pth or .npz)
           | new weights (+ ImageNet backbone: model.backbone.pretrained_backbone_path, or DLA34's download)
  for each remaining epoch:
    train on the epoch's batches (one jitted data-parallel step per batch, progress bar, TensorBoard);
      a non-finite loss stops the run; a diverging loss (`divergence.DivergenceMonitor`) warns, or stops
      with train.stop_on_divergence
    every validation_interval epochs: decode + post-process + PnP on dataset.val_data -> Evaluator
                                      -> val_3DIoU (AP at 3D IoU 0.5), val_2DMPE
    every checkpoint_interval epochs and after the last: Orbax checkpoint (asynchronous)
    status.json line with train_loss / val_3DIoU / val_2DMPE and the data counts (skipped, unreadable samples)

Everything that decides the result (initial weights, data order, augmentation, dropout) derives from
`train.seed`, and a checkpoint holds the whole state, so a run stopped at any point and started again with the
same command ends with the same weights as an uninterrupted run (tests/training/test_training_runs.py).
"""

import logging as std_logging
import math
import os
import time
from typing import Dict, List, Optional

import cv2
import jax
import numpy as np
import tqdm

from centerpose_jax import checkpoint as checkpoint_lib
from centerpose_jax import distributed
from centerpose_jax import errors
from centerpose_jax import mesh as mesh_lib
from centerpose_jax.convert import pretrained
from centerpose_jax.convert import pytorch
from centerpose_jax.data import loader
from centerpose_jax.evaluation import Evaluator
from centerpose_jax.evaluation.scoring import score_batch
from centerpose_jax.inference import draw_detections
from centerpose_jax.inference.predictor import JaxPredictor
from centerpose_jax.models import architecture as architecture_lib
from centerpose_jax.training import divergence as divergence_lib
from centerpose_jax.training import reporting
from centerpose_jax.training import setup as setup_lib
from centerpose_jax.training import state as state_lib

VALIDATION_IMAGES = 4  # validation frames drawn into TensorBoard


class TrainingDivergedError(errors.CenterPoseError, RuntimeError):
  """The loss became NaN or infinite (fp32/bf16), or diverged with `train.stop_on_divergence`; the run
  stopped without saving a checkpoint."""


def pretrained_backbone_source(config):
  """The ImageNet backbone weights of `model.use_pretrained`: `model.backbone.pretrained_backbone_path` (any
  format `checkpoint.load_state_dict` reads), else for DLA34 TAO's public file, downloaded once into the cache
  (`convert.pretrained`). The config check requires the path for FAN."""
  path = config.model.backbone.pretrained_backbone_path
  if path:
    return path
  return pretrained.fetch(pretrained.DLA34_IMAGENET)


def _run_seed(config) -> int:
  """`train.seed`, or a fresh random seed when it is negative (TAO seeds only when seed >= 0)."""
  seed = int(config.train.seed)
  if seed >= 0:
    return seed
  return int(np.random.SeedSequence().generate_state(1)[0] >> 1)


class _Trainer:
  """Holds what the epochs share; see `run`."""

  def __init__(self, config, workdir, parts: Optional[setup_lib.Setup] = None):
    self.config = config
    self.workdir = workdir
    self.is_main = jax.process_index() == 0
    self.dry_run = bool(config.train.is_dry_run)
    self.resume = checkpoint_lib.resume_source(config, workdir)
    self.seed = _run_seed(config)  # a resumed run may take its checkpoint's (see `initial_state`)
    parts = parts or setup_lib.setup(config, seed=self.seed)
    self.precision = parts.precision
    self.devices, self.mesh, self.replicated = parts.devices, parts.mesh, parts.replicated
    self.num_local_devices, self.share = parts.num_local_devices, parts.share
    self.train_loader, self.val_source = parts.train_loader, parts.val_source
    distributed.check_same_job(train_samples=len(self.train_loader.source),
                               val_samples=len(self.val_source) if self.val_source is not None else -1)
    if self.train_loader.seed != self.seed:
      self._new_loader(self.seed)
    self.data_counts = {"skipped_samples": parts.skipped_samples, "unreadable_samples": 0}
    self.steps_per_epoch, self.global_batch = parts.steps_per_epoch, parts.global_batch
    self.model, self.optimizer, self.schedule = parts.model, parts.optimizer, parts.schedule
    self.accumulation, self.train_step, self.input_shape = parts.accumulation, parts.train_step, parts.input_shape
    self.parts = parts
    self.divergence = divergence_lib.DivergenceMonitor(config.train.divergence_factor,
                                                       config.train.divergence_steps)
    self.divergences: List[divergence_lib.Divergence] = []
    self.saved_steps: List[int] = []  # checkpoints written by this run
    self.predictor: Optional[JaxPredictor] = None  # compiled at the first validation

  def _new_loader(self, seed: int) -> None:
    self.train_loader = setup_lib.make_train_loader(self.train_loader.source, self.config.dataset, seed, self.devices)

  # ---------------------------------------------------------------------------------------------- state

  def _restore(self, manager: Optional[checkpoint_lib.CheckpointManager]):
    """(state, meta, step folder) of the newest readable checkpoint of `self.resume`.

    A damaged checkpoint is reported (step and reason) and skipped; in the run's own folder it is moved to
    `<step>.damaged` so that the step can be saved again. Raises DamagedCheckpointError when none is readable.
    """
    folder, steps = self.resume
    same_folder = manager is not None and folder.resolve() == manager.directory.resolve()
    source = manager if same_folder else checkpoint_lib.CheckpointManager(
        folder, asynchronous=False, encryption_key=self.config.encryption_key)
    abstract = self.parts.abstract_state()
    configured = architecture_lib.architecture(self.config)
    damaged = []
    for step in steps:
      try:
        state, meta = source.restore(abstract, step, configured=configured)
      except checkpoint_lib.DamagedCheckpointError as error:
        damaged.append(error)
        std_logging.warning("%s", error)
        continue
      for error in damaged:
        kept = source.set_aside(error.step) if same_folder and self.is_main else error.step_folder
        std_logging.warning("checkpoint %s is damaged: resuming from step %s instead; the damaged one is kept "
                            "as %s", error.step, step, kept)
      return state, meta, folder / str(step)
    raise checkpoint_lib.DamagedCheckpointError(
        folder, "every one is damaged: " + "; ".join(f"step {e.step}: {e.reason}" for e in damaged))

  def _adopt_seed(self, saved_seed: int) -> None:
    """A resumed run continues with its checkpoint's seed when train.seed < 0 (else warns if they differ)."""
    if int(self.config.train.seed) >= 0:
      if saved_seed != self.seed:
        std_logging.warning("resuming a run trained with seed %s under train.seed=%s: the data order follows "
                            "the new seed", saved_seed, self.seed)
      return
    self.seed = saved_seed
    self._new_loader(saved_seed)

  def initial_state(self, manager: Optional[checkpoint_lib.CheckpointManager]):
    """(state, epochs completed, data iterator state to resume within that epoch or None, description).

    `manager` is the run's own checkpoint manager (None in a dry run).
    """
    if self.resume is not None:
      state, meta, step_folder = self._restore(manager)
      if int(meta.get("batches_per_epoch", self.steps_per_epoch)) != self.steps_per_epoch:
        std_logging.warning("the checkpoint was written with %s batches per epoch, this run has %s (dataset or "
                            "batch size changed): epochs and the LR schedule shift", meta["batches_per_epoch"],
                            self.steps_per_epoch)
      self._adopt_seed(int(meta["seed"]))
      self.data_counts["unreadable_samples"] = int(meta.get("unreadable_samples", 0))
      epoch, data_state = int(meta["epoch"]), meta.get("data_iterator")
      if data_state is not None and int(data_state["epoch"]) != epoch:
        data_state = None  # the saved iterator finished its epoch: the next one starts from its beginning
      return state, epoch, data_state, f"resumed from {step_folder}"

    # Initialisation draws from an "rbg" key: XLA's RngBitGenerator compiles 3x faster than threefry for the
    # hundreds of parameter initialisers. Dropout / drop-path use the threefry key `train_rng`, whose values do
    # not depend on how the batch is sharded.
    init_rng = jax.random.key(self.seed, impl="rbg")
    train_rng = jax.random.fold_in(jax.random.PRNGKey(self.seed), 1)

    pretrained = self.config.train.pretrained_model_path
    if pretrained:
      expected = jax.eval_shape(lambda: state_lib.init_variables(self.model, init_rng, self.input_shape))
      variables = checkpoint_lib.load_fitting_variables(pretrained, expected, self.config,
                                                        encryption_key=self.config.encryption_key,
                                                        model=self.model)
      description = f"weights from {pretrained}"
    else:
      variables = self.parts.init_variables(init_rng)
      description = f"new weights (seed {self.seed})"
      if self.config.model.use_pretrained:
        source = pretrained_backbone_source(self.config)
        loaded = pytorch.load_pretrained_backbone(
            mesh_lib.to_host(variables), checkpoint_lib.load_state_dict(source, self.config.encryption_key),
            self.config.model.backbone.model_type)
        variables = loaded.variables
        description += f", ImageNet backbone from {source} ({len(loaded.used_keys)} tensors)"
    return self.parts.new_state(variables, train_rng), 0, None, description

  # ---------------------------------------------------------------------------------------------- epochs

  def train_epoch(self, state, epoch: int, data_state: Optional[dict], log: reporting.TrainingLog):
    """Runs one epoch (one batch when dry-running), from `data_state` if given.

    Returns (state, mean loss of the batches run, samples/s after the first step, the iterator's final state).
    """
    iterator = self.train_loader.epoch(epoch, state=data_state)
    total = 1 if self.dry_run else len(iterator)
    done = 0 if data_state is None else int(mesh_lib.to_host(state.step)) - epoch * self.steps_per_epoch
    losses_seen: List[float] = []
    pending = None  # the previous step's metrics: read after the next step is dispatched
    started, timed_steps = None, 0
    bar = tqdm.tqdm(total=total, initial=min(done, total), desc=f"epoch {epoch + 1}/{self.config.train.num_epochs}",
                    unit="batch", disable=not self.is_main, dynamic_ncols=True)
    try:
      for batch in iterator:
        if done >= total:
          break
        step_before = epoch * self.steps_per_epoch + done
        state, metrics = self.train_step(state, mesh_lib.shard_batch(batch, self.mesh))
        if pending is not None:
          self._report_step(pending, losses_seen, log, bar, started, timed_steps)
        pending = (step_before, metrics)
        done += 1
        if started is None:  # the first step includes compilation: time from the end of it
          jax.block_until_ready(metrics["loss"])
          started = time.perf_counter()
        else:
          timed_steps += 1
      if pending is not None:
        jax.block_until_ready(pending[1]["loss"])
        self._report_step(pending, losses_seen, log, bar, started, timed_steps)
      iterator_state = iterator.get_state()
    finally:
      bar.close()
      iterator.close()
    seconds = time.perf_counter() - started if started is not None else 0.0
    samples_per_second = timed_steps * self.global_batch / seconds if seconds > 0 and timed_steps else math.nan
    mean_loss = float(np.mean(losses_seen)) if losses_seen else math.nan
    return state, mean_loss, samples_per_second, iterator_state

  def _report_step(self, pending, losses_seen, log, bar, started, timed_steps):
    """Reads one step's metrics (a device sync), stops on a non-finite fp32/bf16 loss, logs and updates the bar."""
    step, metrics = pending
    values = {name: float(value) for name, value in mesh_lib.to_host(metrics).items()}
    loss = values["loss"]
    if not math.isfinite(loss) and self.precision != "fp16":
      raise TrainingDivergedError(
          f"the training loss is {loss} at step {step + 1} (epoch {step // self.steps_per_epoch + 1}): stopped "
          f"without saving. The last good checkpoint (if any) is in {self.workdir}. Try a lower "
          f"train.optim.lr, a positive train.clip_grad_val, or check the data (tools/validate_dataset.py).")
    if math.isfinite(loss):
      losses_seen.append(loss)
    diverged = self.divergence.update(step + 1, loss)
    if diverged is not None:
      self._on_divergence(diverged, log)
    lr = float(self.schedule(step // self.accumulation))
    elapsed = time.perf_counter() - started if started is not None else 0.0
    speed = timed_steps * self.global_batch / elapsed if elapsed > 0 and timed_steps else math.nan
    scalars = dict(values, lr=lr)
    if math.isfinite(speed):
      scalars["samples_per_second"] = speed
    log.scalars(step + 1, scalars, "train")
    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", samples_per_s=f"{speed:.2f}", refresh=False)
    bar.update(1)

  def _on_divergence(self, diverged: divergence_lib.Divergence, log: reporting.TrainingLog) -> None:
    """Stops the run (`train.stop_on_divergence`) or warns, naming the checkpoints written before the onset."""
    good = [step for step in self.saved_steps if step < diverged.onset]
    after = [step for step in self.saved_steps if step >= diverged.onset]
    where = (f"the last checkpoint written before the loss began to grow is {self.workdir}/{good[-1]}"
             if good else "no checkpoint was written before the loss began to grow")
    if after:
      where += f"; checkpoints {', '.join(map(str, after))} hold the diverging model"
    advice = "Try a lower train.optim.lr or a positive train.clip_grad_val, or check the data."
    if self.config.train.stop_on_divergence:
      raise TrainingDivergedError(f"{diverged}: stopped without saving ({where}). {advice}")
    self.divergences.append(diverged)
    message = f"{diverged}; training goes on (train.stop_on_divergence=True stops it); {where}. {advice}"
    std_logging.warning("%s", message)
    log.status("RUNNING", message, verbosity="WARNING")

  # ---------------------------------------------------------------------------------------------- validation

  def validate(self, state, step: int, log: reporting.TrainingLog) -> Dict[str, float]:
    """val_3DIoU and val_2DMPE of the current weights on dataset.val_data.

    Each process loads and scores its share of the frames (frames p, p + N, ... of N processes), in batches of
    dataset.batch_size per device; the scored frames are gathered and merged in the data's order, so the
    metrics are those of one process scoring every frame. Process 0 draws the first frames of its share.
    """
    config = self.config
    if self.predictor is None:
      self.predictor = JaxPredictor(self.model, state.variables(), batch_size=self.global_batch,
                                    num_select=config.inference.num_select, mesh=self.mesh)
    predictor = self.predictor.with_variables(state.variables())
    evaluator = Evaluator.from_config(config)
    drawn = []
    batches = loader.iterate_eval_batches(self.val_source, config.dataset,
                                          batch_size=self.global_batch // self.share[1], with_targets=False,
                                          shard_index=self.share[0], shard_count=self.share[1])
    for batch_index, batch in enumerate(tqdm.tqdm(batches, desc="validation", unit="batch",
                                                  disable=not self.is_main, leave=False)):
      detections = score_batch(evaluator, predictor.process_share(batch["input"]), batch, config)
      for i, image_detections in enumerate(detections):
        if self.is_main and batch["sample_weight"][i] and len(drawn) < VALIDATION_IMAGES:
          drawn.append(self._draw(batch["image_path"][i], image_detections, batch["camera_k"][i]))
      if self.dry_run and batch_index == 0:
        break
    if self.share[1] > 1:
      merged = Evaluator.from_config(config)
      shares = sorted(distributed.all_gather_objects((self.share[0], evaluator.frames())), key=lambda s: s[0])
      merged.add_scored_frames(distributed.interleave([frames for _, frames in shares]))
      evaluator = merged
    headline = evaluator.finalize()["headline"]
    metrics = {"val_3DIoU": float(headline["3DIoU_AP@0.5"]), "val_2DMPE": float(headline["2DMPE"])}
    log.scalars(step, metrics, "val")
    log.images(step, [image for image in drawn if image is not None], "val/prediction")
    return metrics

  def _draw(self, image_path, detections, camera_k):
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
      return None
    return draw_detections(image, detections, camera_k, axis_size=self.config.inference.axis_size)


def run(config, workdir: Optional[str] = None, parts: Optional[setup_lib.Setup] = None) -> dict:
  """Trains (or resumes training of) the configured model; see the module docstring.

  Args:
    config: the whole, validated config (configs/default.py).
    workdir: the training folder for checkpoints, TensorBoard and status.json (default
      `checkpoint.train_dir(config)`: `train.results_dir` or `results_dir/train`).
    parts: the run's wiring (`training.setup.setup(config)`, default); a caller may pass its own, e.g. with
      a wrapped `train_step`.

  Returns:
    A summary: workdir, start (where the weights came from: "resumed from <step folder>", "new weights ...",
    "weights from ..."), epochs (completed), steps, train_loss (mean of the last epoch), val_3DIoU /
    val_2DMPE (last validation, absent without validation data), skipped_steps (fp16), samples_per_second,
    seconds, fingerprint (SHA-256 of the final weights, as tools/checkpoint_info.py prints), checkpoint
    (the latest step folder; absent in a dry run), skipped_samples (invalid samples left out with
    dataset.skip_invalid), unreadable_samples (images that failed to decode while training, weight 0) and
    diverged_at (steps at which a divergence was detected and training went on).

  Raises:
    TrainingDivergedError: the loss became non-finite (fp32 / bf16), or diverged with
      train.stop_on_divergence.
    annotations.DatasetError: invalid samples (without dataset.skip_invalid).
    checkpoint.DamagedCheckpointError: no checkpoint to resume from can be read.
  """
  distributed.join_job(config)
  workdir = os.path.abspath(workdir or checkpoint_lib.train_dir(config))
  trainer = _Trainer(config, workdir, parts)
  num_epochs = int(config.train.num_epochs)
  manager = None if trainer.dry_run else checkpoint_lib.CheckpointManager(
      workdir, max_to_keep=int(config.train.get("max_checkpoints_to_keep", 0)),
      encryption_key=config.encryption_key)
  start = time.perf_counter()
  state, epoch, data_state, origin = trainer.initial_state(manager)
  step = int(mesh_lib.to_host(state.step))
  log = reporting.TrainingLog(workdir, enabled=trainer.is_main and not trainer.dry_run,
                            purge_step=step + 1 if step else None)
  if trainer.is_main:
    print(f"training {config.model.backbone.model_type} on {len(trainer.devices)} device(s), global batch "
          f"{trainer.global_batch}, {trainer.steps_per_epoch} steps/epoch, precision {trainer.precision}: "
          f"{origin}; epoch {epoch + 1} of {num_epochs}, step {step}")
  log.status("STARTED" if step == 0 else "RUNNING", f"Starting training: {origin}", epoch=epoch,
             max_epoch=num_epochs, data=dict(trainer.data_counts))
  summary = {"workdir": workdir, "start": origin}
  train_loss, speed, val_metrics = math.nan, math.nan, {}
  try:
    while epoch < num_epochs:
      state, train_loss, speed, iterator_state = trainer.train_epoch(state, epoch, data_state, log)
      data_state = None
      epoch += 1
      step = int(mesh_lib.to_host(state.step))
      trainer.data_counts["unreadable_samples"] += int(iterator_state["failed_samples"])
      kpi = {"train_loss": train_loss}
      # As Lightning's check_val_every_n_epoch: epochs that are multiples of the interval.
      if trainer.val_source is not None and (trainer.dry_run or epoch % config.train.validation_interval == 0):
        val_metrics = trainer.validate(state, step, log)
        kpi.update(val_metrics)
        if trainer.is_main:
          print(f"epoch {epoch}: val_3DIoU {val_metrics['val_3DIoU']:.4f}, "
                f"val_2DMPE {val_metrics['val_2DMPE']:.4f}")
      if trainer.dry_run:
        break
      if epoch % config.train.checkpoint_interval == 0 or epoch == num_epochs:
        manager.save(state, {"epoch": epoch, "data_iterator": iterator_state, "seed": trainer.seed,
                             "model": architecture_lib.architecture(config),
                             "unreadable_samples": trainer.data_counts["unreadable_samples"],
                             "precision": trainer.precision, "batches_per_epoch": trainer.steps_per_epoch})
        trainer.saved_steps.append(step)
      log.scalars(step, {"epoch_loss": train_loss}, "train")
      log.scalars(step, trainer.data_counts, "data")
      log.status("RUNNING", f"Epoch {epoch} of {num_epochs} done", epoch=epoch, max_epoch=num_epochs, kpi=kpi,
                 data=dict(trainer.data_counts))
      log.flush()  # the curves up to the checkpoint survive a kill (a resumed run continues them)
  except TrainingDivergedError as error:
    log.status("FAILURE", str(error), epoch=epoch, max_epoch=num_epochs, data=dict(trainer.data_counts))
    raise
  finally:
    if manager is not None:
      manager.wait()
      manager.close()
    log.close()

  variables = mesh_lib.to_host(state.variables())
  summary.update(epochs=epoch, steps=step, train_loss=train_loss, samples_per_second=speed,
                 skipped_steps=int(mesh_lib.to_host(state.skipped_steps)), seconds=time.perf_counter() - start,
                 fingerprint=checkpoint_lib.fingerprint(variables), diverged_at=[d.step for d in trainer.divergences],
                 **trainer.data_counts, **val_metrics)
  if manager is not None and manager.latest_step() is not None:
    summary["checkpoint"] = str(manager.directory / str(manager.latest_step()))
  message = (f"training done: {epoch} epochs, {step} steps, train_loss {train_loss:.4f}"
             + "".join(f", {k} {v:.4f}" for k, v in val_metrics.items())
             + (f", {summary['skipped_steps']} fp16 steps skipped" if trainer.precision == "fp16" else "")
             + "".join(f", {count} {name.replace('_', ' ')}" for name, count in trainer.data_counts.items()
                       if count)
             + "".join(f", WARNING: the loss diverged at step {d.step}" for d in trainer.divergences)
             + f", {summary['seconds']:.0f} s; "
             + ("dry run, nothing saved" if trainer.dry_run else f"checkpoints in {workdir}"))
  log.status("SUCCESS", message, epoch=epoch, max_epoch=num_epochs,
             kpi={"train_loss": train_loss, **val_metrics}, data=dict(trainer.data_counts))
  if trainer.is_main:
    print(message)
  return summary
