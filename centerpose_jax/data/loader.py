"""Batches for training and evaluation: raw samples -> decode -> augment -> TAO targets, on grain.

A *source* is any random-access sequence (len + integer indexing, picklable) of raw samples with
`image_bytes`, `annotation` (parsed JSON dict) and `path` (see `discovery.RawSample`): a dataset folder
(`discovery.FolderSamples`) or packed ArrayRecord shards (`tfds_builder.PackedSamples`).

Training batch (B = dataset.batch_size x local devices, S symmetry copies, M = max_objs, J = 8, input H x W,
output grid h x w = input / 4):
  input f32 [B, H, W, 3] (normalised BGR); hm f32 [B, S, h, w, 1]; hm_hp f32 [B, S, h, w, J];
  wh, reg f32 [B, S, M, 2]; scale f32 [B, S, M, 3]; hps, hps_mask f32 [B, S, M, 2J]; ind int32 [B, S, M];
  reg_mask f32 [B, S, M]; hp_offset f32 [B, S, M*J, 2]; hp_ind int32 [B, S, M*J]; hp_mask f32 [B, S, M*J];
  sample_weight f32 [B].
`ind` and `hp_ind` index the flattened grid as y * w + x. A sample whose image cannot be decoded is emitted with
all-zero input and targets and `sample_weight` 0 (batch shapes stay static, the epoch keeps its length) and is
counted by the iterator (`failed_samples`).

Randomness: sample i of epoch e draws everything from `np.random.default_rng([seed, e, i])` (i = its index in
the source), and the epoch order is a shuffle seeded by (seed, e); results do not depend on worker count.
"""

import dataclasses
import logging
import math
from typing import Dict, Iterator, List, Optional, Sequence

from absl import flags
import grain.python as grain
import jax
import numpy as np

from centerpose_jax import errors
from centerpose_jax import config as config_lib
from centerpose_jax.data import annotations
from centerpose_jax.data import augment
from centerpose_jax.data import discovery
from centerpose_jax.data import images
from centerpose_jax.data import targets as targets_lib
from centerpose_jax.data import tfds_builder

# Per-sample metadata of evaluation batches, kept as Python lists (not stacked).
METADATA_LIST_KEYS = ("image_path", "json_path", "annotation", "camera_k")
_PREFETCH_BATCHES = 2


@dataclasses.dataclass(frozen=True)
class SampleSettings:
  """Everything the per-sample encoder needs, as plain values (cheap to send to worker processes).

  `input_size` and `output_size` are (width, height) in pixels of the network input and of the output grid.
  """
  input_size: tuple
  output_size: tuple
  max_objs: int
  num_joints: int
  num_symmetry: int
  mean: tuple
  std: tuple
  eig_val: tuple
  eig_vec: tuple
  flip_idx: tuple
  center_3d: bool
  obj_scale: bool
  use_absolute_scale: bool
  random_crop: bool
  flip_probability: float
  rotation_probability: float
  max_rotation_deg: float
  color_augmentation: bool

  @classmethod
  def from_config(cls, dataset_config) -> "SampleSettings":
    """Settings from the `dataset` section of the config (TAO field names)."""
    d = dataset_config
    return cls(
        input_size=config_lib.input_size(d), output_size=config_lib.output_size(d), max_objs=int(d.max_objs),
        num_joints=int(d.num_joints), num_symmetry=int(d.num_symmetry),
        mean=tuple(d.mean), std=tuple(d.std), eig_val=tuple(d.eig_val), eig_vec=tuple(map(tuple, d.eig_vec)),
        flip_idx=tuple(map(tuple, d.flip_idx)), center_3d=bool(d.center_3D), obj_scale=bool(d.obj_scale),
        use_absolute_scale=bool(d.use_absolute_scale), random_crop=not d.not_rand_crop,
        flip_probability=float(d.flip), rotation_probability=float(d.aug_rot),
        max_rotation_deg=float(d.rotate), color_augmentation=not d.no_color_aug)


def _empty_sample(settings: SampleSettings, with_targets: bool) -> Dict[str, np.ndarray]:
  width, height = settings.input_size
  sample = {"input": np.zeros((height, width, 3), np.float32), "sample_weight": np.float32(0.0)}
  if with_targets:
    sample.update(targets_lib.empty_targets(settings.num_symmetry, settings.max_objs, settings.num_joints,
                                            settings.output_size))
  return sample


def encode_sample(raw, settings: SampleSettings, rng=None, with_targets=True):
  """Input and targets of one raw sample (shapes in the module docstring, without the batch axis).

  Args:
    raw: a raw sample (`image_bytes`, `annotation`, `path`).
    settings: see `SampleSettings`.
    rng: np.random.Generator for training augmentation; None for evaluation (letterbox, no colour change).
    with_targets: also encode the targets (needs the annotation).

  Returns:
    (sample, crop, (width, height)): `sample` holds `input`, `sample_weight` (1, or 0 with all-zero arrays if
    the image cannot be decoded) and, if `with_targets`, the `targets.TARGET_KEYS`; `crop` is the
    `augment.CropParams` used (None if not decoded) and (width, height) the image size in pixels ((0, 0) then).
  """
  image = images.decode_image(raw.image_bytes)
  if image is None:
    logging.warning("cannot decode image %s: sample skipped (sample_weight 0)", raw.path)
    return _empty_sample(settings, with_targets), None, (0, 0)
  height, width = image.shape[:2]
  if rng is None:
    crop = augment.letterbox_crop(width, height, input_size=settings.input_size)
  else:
    crop = augment.sample_crop(rng, width, height, input_size=settings.input_size,
                               random_crop=settings.random_crop,
                               flip_probability=settings.flip_probability,
                               rotation_probability=settings.rotation_probability,
                               max_rotation_deg=settings.max_rotation_deg)
  color_rng = rng if (rng is not None and settings.color_augmentation) else None
  sample = {"input": augment.make_input(image, crop, settings.input_size, settings.mean, settings.std,
                                        rng=color_rng, eig_val=settings.eig_val, eig_vec=settings.eig_vec),
            "sample_weight": np.float32(1.0)}
  if with_targets:
    sample.update(targets_lib.encode_targets(
        raw.annotation, width, height, crop, num_symmetry=settings.num_symmetry, max_objs=settings.max_objs,
        output_size=settings.output_size, flip_idx=settings.flip_idx, center_3d=settings.center_3d,
        obj_scale=settings.obj_scale, use_absolute_scale=settings.use_absolute_scale,
        num_joints=settings.num_joints))
  return sample, crop, (width, height)


def _eval_metadata(raw, crop, image_size) -> dict:
  """Per-sample metadata of evaluation batches (see `iterate_eval_batches`); `raw` None for padding."""
  return {
      "center": np.zeros(2, np.float32) if crop is None else np.asarray(crop.center, np.float32),
      "crop_scale": np.float32(0.0 if crop is None else crop.scale),
      "width": np.int32(image_size[0]), "height": np.int32(image_size[1]),
      "image_path": "" if raw is None else str(raw.path),
      "json_path": None if raw is None else getattr(raw, "json_path", None),
      "annotation": None if raw is None else raw.annotation,
      "camera_k": None if raw is None else annotations.camera_matrix_from_annotation(raw.annotation),
  }


def collate(samples: Sequence[dict]) -> dict:
  """One batch from per-sample dicts: arrays stacked on a new leading axis, `METADATA_LIST_KEYS` as lists."""
  return {key: ([s[key] for s in samples] if key in METADATA_LIST_KEYS else np.stack([s[key] for s in samples]))
          for key in samples[0]}


class _EncodeTrainSample(grain.MapTransform):
  """Source index -> encoded training sample, with the (seed, epoch, index) Generator."""

  def __init__(self, source, settings: SampleSettings, seed: int, epoch: int):
    self.source, self.settings, self.seed, self.epoch = source, settings, seed, epoch

  def map(self, index):
    index = int(index)
    rng = np.random.default_rng([self.seed, self.epoch, index])
    return encode_sample(self.source[index], self.settings, rng=rng)[0]


class _EncodeEvalSample(grain.MapTransform):
  """Source index (or -1 for padding) -> letterboxed sample with metadata for the inverse affine and PnP."""

  def __init__(self, source, settings: SampleSettings, with_targets: bool):
    self.source, self.settings, self.with_targets = source, settings, with_targets

  def map(self, index):
    index = int(index)
    if index < 0:
      return {**_empty_sample(self.settings, self.with_targets), **_eval_metadata(None, None, (0, 0))}
    raw = self.source[index]
    sample, crop, image_size = encode_sample(raw, self.settings, rng=None, with_targets=self.with_targets)
    return {**sample, **_eval_metadata(raw, crop, image_size)}


def _to_iterator(dataset: grain.MapDataset, workers: int) -> grain.DatasetIterator:
  iterable = dataset.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=_PREFETCH_BATCHES))
  if workers > 0:
    # grain 0.2.18's worker start reads an absl flag (worker profiling) and raises UnparsedFlagAccessError
    # outside an absl app (tests, tools). Marking the flags parsed keeps every flag at its default.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    iterable = iterable.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return iter(iterable)


def _default_shard(shard_index, shard_count):
  return (jax.process_index() if shard_index is None else int(shard_index),
          jax.process_count() if shard_count is None else int(shard_count))


def open_source(path):
  """The raw samples at `path`: packed ArrayRecord shards (`tfds_builder.PackedSamples`) or an image folder
  (`discovery.FolderSamples`; raises FileNotFoundError naming the folder when it holds no image + JSON pair)."""
  if tfds_builder.is_packed_dataset(path):
    return tfds_builder.PackedSamples(path)
  return discovery.FolderSamples(path)


class DatasetTooSmallError(errors.CenterPoseError, ValueError):
  """Fewer training samples per process than one batch."""


@dataclasses.dataclass(frozen=True)
class CheckedDataset:
  """What `check_dataset` leaves to train or evaluate on.

  Attributes:
    source: the samples to use (all of them, or the valid ones with `dataset.skip_invalid`).
    report: the validation (`annotations.DatasetReport`).
    skipped: invalid samples left out (0 unless `dataset.skip_invalid`).
  """
  source: Sequence
  report: annotations.DatasetReport
  skipped: int


def check_dataset(source, dataset_config, *, needs_evaluation=False) -> CheckedDataset:
  """Validates every label and decodes every image before training or evaluation.

  Raises `annotations.DatasetError` listing every problem, unless `dataset_config.skip_invalid`, in which case
  the invalid samples are left out with one warning listing them (the source becomes a
  `discovery.SubsetSamples`).
  """
  report = annotations.validate_source(source, needs_symmetry=int(dataset_config.num_symmetry) > 1,
                                       needs_evaluation=needs_evaluation)
  if not report.problems:
    return CheckedDataset(source, report, 0)
  if not dataset_config.skip_invalid:
    raise annotations.DatasetError(report.problems, header=f"invalid dataset, {len(report.invalid_indices)} of "
                                   f"{report.num_samples} samples (set dataset.skip_invalid=True to skip them)")
  valid = sorted(set(range(len(source))) - set(report.invalid_indices))
  if not valid:
    raise annotations.DatasetError(report.problems, header="no valid sample left")
  logging.warning("skipping %d invalid samples of %d (dataset.skip_invalid):\n%s", len(report.invalid_indices),
                  report.num_samples, "\n".join(report.problems))
  return CheckedDataset(discovery.SubsetSamples(source, valid), report, len(report.invalid_indices))


class TrainIterator:
  """The batches of one training epoch; saves and restores its position (JSON-able state).

  Attributes:
    epoch: the epoch it iterates.
    failed_samples: samples emitted with `sample_weight` 0 (undecodable images) so far in this epoch, including
      those before a restored position.
  """

  def __init__(self, grain_iterator: grain.DatasetIterator, epoch: int, steps: int):
    self._iterator = grain_iterator
    self.epoch = epoch
    self.steps = steps
    self.failed_samples = 0

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    self.failed_samples += int(np.sum(batch["sample_weight"] == 0))
    return batch

  def __len__(self) -> int:
    return self.steps

  def close(self) -> None:
    """Stops the worker processes and prefetch threads (also done when the iterator is garbage collected)."""
    self._iterator.close()

  def get_state(self) -> dict:
    """JSON-able position: epoch, grain's iterator state and the failure count."""
    return {"epoch": self.epoch, "grain": self._iterator.get_state(), "failed_samples": self.failed_samples}

  def set_state(self, state: dict) -> None:
    if int(state["epoch"]) != self.epoch:
      raise ValueError(f"state of epoch {state['epoch']} given to the iterator of epoch {self.epoch}")
    self._iterator.set_state(state["grain"])
    self.failed_samples = int(state["failed_samples"])


class _ShareOfGlobalBatches(grain.MapTransform):
  """Position j of shard `index`'s samples -> the source index at its place in the epoch's global batches."""

  def __init__(self, order: grain.MapDataset, batch_size: int, index: int, count: int):
    self.order, self.batch_size, self.index, self.count = order, batch_size, index, count

  def map(self, position):
    step, row = divmod(int(position), self.batch_size)
    return self.order[(step * self.count + self.index) * self.batch_size + row]


class TrainLoader:
  """Training batches of one process: shuffled per epoch, sharded over processes, drop_last, augmented.

  Each epoch is a permutation of the whole source seeded by (seed, epoch), cut into global batches of
  `batch_size x shard_count` samples (the incomplete last one dropped); shard i loads block i of each global
  batch. So every process runs the same number of steps, the processes' samples together are exactly the
  epoch of one process with the global batch, with no duplicates, and the global batch assembled from the
  shards (in shard order) is that process's batch: N processes train like one.

  Args:
    source: random-access sequence of raw samples (validate it first with `check_dataset`).
    dataset_config: the `dataset` config section (batch_size per device, workers, augmentation fields, ...).
    seed: the run's seed (`train.seed`).
    num_local_devices: devices fed by this process (default `jax.local_device_count()`); the process batch is
      `dataset.batch_size` times this.
    shard_index, shard_count: this process's shard (default `jax.process_index()` / `jax.process_count()`).
    workers: worker processes (default `dataset.workers`; 0 decodes in this process).
  """

  def __init__(self, source, dataset_config, *, seed: int, num_local_devices: Optional[int] = None,
               shard_index: Optional[int] = None, shard_count: Optional[int] = None,
               workers: Optional[int] = None):
    self.source = source
    self.settings = SampleSettings.from_config(dataset_config)
    self.seed = int(seed)
    devices = jax.local_device_count() if num_local_devices is None else int(num_local_devices)
    self.batch_size = int(dataset_config.batch_size) * devices
    self.shard_index, self.shard_count = _default_shard(shard_index, shard_count)
    self.workers = int(dataset_config.workers if workers is None else workers)
    self.steps_per_epoch = len(source) // (self.batch_size * self.shard_count)
    if self.steps_per_epoch == 0:
      raise DatasetTooSmallError(
          f"{len(source)} samples over {self.shard_count} processes give no full batch of {self.batch_size} "
          f"(dataset.batch_size x {devices} devices): lower dataset.batch_size or add samples")

  def epoch_indices(self, epoch: int) -> grain.MapDataset:
    """Source indices this process visits in `epoch`, in order (a grain MapDataset of `steps_per_epoch x
    batch_size` ints)."""
    seed = int(np.random.SeedSequence([self.seed, epoch]).generate_state(1)[0])
    order = grain.MapDataset.range(len(self.source)).shuffle(seed=seed)
    share = _ShareOfGlobalBatches(order, self.batch_size, self.shard_index, self.shard_count)
    return grain.MapDataset.range(self.steps_per_epoch * self.batch_size).map(share)

  def epoch(self, epoch: int, state: Optional[dict] = None) -> TrainIterator:
    """Iterator over the `steps_per_epoch` batches of `epoch`, resumed at `state` (from `get_state`) if given."""
    dataset = (self.epoch_indices(epoch).map(_EncodeTrainSample(self.source, self.settings, self.seed, epoch))
               .batch(self.batch_size, drop_remainder=True, batch_fn=collate))
    iterator = TrainIterator(_to_iterator(dataset, self.workers), epoch, self.steps_per_epoch)
    if state is not None:
      iterator.set_state(state)
    return iterator


def iterate_eval_batches(source, dataset_config, *, batch_size: Optional[int] = None, with_targets: bool = True,
                         shard_index: Optional[int] = None, shard_count: Optional[int] = None,
                         workers: Optional[int] = None) -> Iterator[dict]:
  """Evaluation / validation batches: letterboxed, in source order, the last batch padded.

  Every process gets the same number of batches; padding samples have `sample_weight` 0, empty `image_path`
  and None metadata. Besides `input` [B, H, W, 3] and `sample_weight` [B] (and the targets when
  `with_targets`), a batch holds per sample: `center` f32 [B, 2] and `crop_scale` f32 [B] (pixels; the affine that
  `transforms.affine_transform_matrix(..., inverse=True)` undoes), `width` / `height` int32 [B] of the
  original image, and the lists `image_path`, `json_path` (or None), `annotation` (the parsed label or None)
  and `camera_k` ([3, 3] from the label's intrinsics, or None).

  Args:
    source: random-access sequence of raw samples.
    dataset_config: the `dataset` config section.
    batch_size: samples per batch (default `dataset.batch_size`).
    with_targets: also encode the training targets (validation loss); needs labels.
    shard_index, shard_count: this process's shard (default from jax).
    workers: worker processes (default `dataset.workers`).
  """
  settings = SampleSettings.from_config(dataset_config)
  batch_size = int(dataset_config.batch_size if batch_size is None else batch_size)
  shard_index, shard_count = _default_shard(shard_index, shard_count)
  per_step = batch_size * shard_count
  padded = math.ceil(len(source) / per_step) * per_step
  indices: List[int] = (list(range(len(source))) + [-1] * (padded - len(source)))[shard_index::shard_count]
  dataset = (grain.MapDataset.source(indices).map(_EncodeEvalSample(source, settings, with_targets))
             .batch(batch_size, drop_remainder=False, batch_fn=collate))
  yield from _to_iterator(dataset, int(dataset_config.workers if workers is None else workers))
