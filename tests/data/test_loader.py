"""The grain loader: reproducible, resumable, worker-independent, sharded batches; undecodable images counted."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from centerpose_jax.data import discovery
from centerpose_jax.data import loader
from centerpose_jax.data import targets
from configs import default

FRAMES = ("t03_synth_single", "t04_synth_corner_outside", "t05_synth_three_objects")
NUM_SAMPLES = 11
REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset_root(tao_reference, tmp_path_factory):
  """11 fixture frames in 2 sequence folders; seq1/004 is a corrupt image (its label is valid)."""
  root = tmp_path_factory.mktemp("frames")
  for i in range(NUM_SAMPLES):
    folder = root / f"seq{i % 2}"
    folder.mkdir(exist_ok=True)
    frame = tao_reference / "targets" / FRAMES[i % len(FRAMES)]
    shutil.copy(frame / "frame.png", folder / f"{i:03d}.png")
    shutil.copy(frame / "frame.json", folder / f"{i:03d}.json")
  (root / "seq0" / "004.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
  return root


@pytest.fixture(scope="module")
def source(dataset_root):
  return discovery.FolderSamples(dataset_root)


def _dataset_config(**overrides):
  dataset = default.get_config().dataset
  dataset.input_res, dataset.output_res = 64, 16
  dataset.batch_size = 2
  dataset.workers = 0
  for key, value in overrides.items():
    setattr(dataset, key, value)
  return dataset


def _train_loader(source, seed=5, shard_index=0, shard_count=1, workers=0, **overrides):
  return loader.TrainLoader(source, _dataset_config(**overrides), seed=seed, num_local_devices=1,
                            shard_index=shard_index, shard_count=shard_count, workers=workers)


def _assert_same_batches(first, second):
  assert len(first) == len(second)
  for a, b in zip(first, second):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_format(source):
  train_loader = _train_loader(source)
  assert train_loader.steps_per_epoch == NUM_SAMPLES // 2
  batch = next(train_loader.epoch(0))
  shapes = {key: (value.shape, value.dtype.name) for key, value in batch.items()}
  assert shapes == {
      "input": ((2, 64, 64, 3), "float32"), "sample_weight": ((2,), "float32"),
      "hm": ((2, 1, 16, 16, 1), "float32"), "hm_hp": ((2, 1, 16, 16, 8), "float32"),
      "wh": ((2, 1, 10, 2), "float32"), "reg": ((2, 1, 10, 2), "float32"), "scale": ((2, 1, 10, 3), "float32"),
      "hps": ((2, 1, 10, 16), "float32"), "hps_mask": ((2, 1, 10, 16), "float32"),
      "ind": ((2, 1, 10), "int32"), "reg_mask": ((2, 1, 10), "float32"),
      "hp_offset": ((2, 1, 80, 2), "float32"), "hp_ind": ((2, 1, 80), "int32"), "hp_mask": ((2, 1, 80), "float32")}
  assert set(targets.TARGET_KEYS) | {"input", "sample_weight"} == set(batch)


def test_corrupt_image_is_skipped_and_counted(source):
  corrupt = [i for i in range(len(source)) if source[i].path.endswith("seq0/004.png")]
  assert corrupt == [2]
  train_loader = _train_loader(source, shard_count=1)
  order = list(train_loader.epoch_indices(0))
  iterator = train_loader.epoch(0)
  batches = list(iterator)
  assert len(batches) == train_loader.steps_per_epoch  # the epoch keeps its length
  weights = np.concatenate([b["sample_weight"] for b in batches])
  visited = order[:len(weights)]
  expected_failures = int(2 in visited)
  assert iterator.failed_samples == expected_failures == int(np.sum(weights == 0))
  for batch in batches:
    for row in np.flatnonzero(batch["sample_weight"] == 0):
      for key, value in batch.items():
        assert not np.any(value[row]), key  # all-zero input and targets
  assert expected_failures == 1, "seed 5 should visit the corrupt sample in epoch 0"


def test_same_seed_same_batches_and_epochs_differ(source):
  first = list(_train_loader(source, seed=5).epoch(1))
  again = list(_train_loader(source, seed=5).epoch(1))
  _assert_same_batches(first, again)
  orders = {tuple(_train_loader(source, seed=seed).epoch_indices(epoch)) for seed in (5, 6) for epoch in (0, 1)}
  assert len(orders) == 4
  assert all(sorted(order) != list(order) for order in orders)
  # Augmentation is on: the same sample in another epoch gets another crop.
  other = list(_train_loader(source, seed=6).epoch(1))
  assert not np.array_equal(first[0]["input"], other[0]["input"])


def test_restored_iterator_continues_exactly(source):
  train_loader = _train_loader(source)
  reference = list(train_loader.epoch(0))
  iterator = train_loader.epoch(0)
  consumed = [next(iterator), next(iterator)]
  state = json.loads(json.dumps(iterator.get_state()))  # survives a JSON checkpoint
  resumed = train_loader.epoch(0, state=state)
  _assert_same_batches(consumed + list(resumed), reference)
  assert resumed.failed_samples == iterator.failed_samples + sum(
      int(np.sum(b["sample_weight"] == 0)) for b in reference[2:])
  with pytest.raises(ValueError, match="epoch 0"):
    train_loader.epoch(1, state=state)


def test_two_workers_give_the_in_process_batches_and_resume(source):
  reference = list(_train_loader(source, workers=0).epoch(2))
  parallel = _train_loader(source, workers=2)
  iterator = parallel.epoch(2)
  first = next(iterator)
  state = json.loads(json.dumps(iterator.get_state()))
  rest = list(iterator)
  iterator.close()
  _assert_same_batches([first] + rest, reference)
  resumed = parallel.epoch(2, state=state)
  _assert_same_batches(list(resumed), reference[1:])
  resumed.close()


@pytest.mark.parametrize("shard_count", [2, 3])
def test_shards_together_are_the_epoch_of_one_process_with_the_global_batch(source, shard_count):
  """N processes x 1 device load exactly what 1 process x N devices loads: the same samples (none twice,
  none extra), each global batch the concatenation of the shards' batches in shard order, the same step
  count on every shard (11 samples do not divide: the same incomplete global batch is dropped by all)."""
  shards = [_train_loader(source, shard_index=i, shard_count=shard_count) for i in range(shard_count)]
  whole = loader.TrainLoader(source, _dataset_config(), seed=5, num_local_devices=shard_count, shard_index=0,
                             shard_count=1, workers=0)
  steps = NUM_SAMPLES // (2 * shard_count)
  assert [shard.steps_per_epoch for shard in shards] == [steps] * shard_count == [whole.steps_per_epoch] * shard_count
  orders = [list(shard.epoch_indices(3)) for shard in shards]
  single = list(whole.epoch_indices(3))
  assert len(single) == steps * 2 * shard_count and len(set(single)) == len(single)
  assert sorted(sum(orders, [])) == sorted(single)
  for step in range(steps):
    assert sum((order[2 * step:2 * step + 2] for order in orders), []) == single[2 * step * shard_count:
                                                                                2 * (step + 1) * shard_count]
  # The shards' batches are those samples, with the same per-sample augmentation as unsharded.
  batches = [next(shard.epoch(3)) for shard in shards]
  np.testing.assert_array_equal(np.concatenate([b["input"] for b in batches]), next(whole.epoch(3))["input"])


def test_any_random_access_sequence_is_a_source(source):
  in_memory = [source[i] for i in range(len(source))]  # e.g. what a packed ArrayRecord reader returns
  _assert_same_batches(list(_train_loader(in_memory).epoch(0)), list(_train_loader(source).epoch(0)))


def test_eval_batches_are_letterboxed_padded_and_described(source, dataset_root):
  config = _dataset_config()
  batches = list(loader.iterate_eval_batches(source, config, batch_size=4, workers=0))
  assert [len(b["sample_weight"]) for b in batches] == [4, 4, 4]
  weights = np.concatenate([b["sample_weight"] for b in batches])
  np.testing.assert_array_equal(weights, [1, 1, 0] + [1] * 8 + [0])  # the corrupt image, then padding
  paths = sum((b["image_path"] for b in batches), [])
  assert paths == [source[i].path for i in range(NUM_SAMPLES)] + [""]
  assert batches[0]["json_path"][0] == str(dataset_root / "seq0" / "000.json") and batches[2]["json_path"][3] is None
  first = batches[0]
  np.testing.assert_array_equal(first["center"][0], [240.0, 320.0])  # t03: 480 x 640 (W x H)
  assert first["crop_scale"][0] == 640.0 and first["width"][0] == 480 and first["height"][0] == 640
  intrinsics = first["annotation"][0]["camera_data"]["intrinsics"]
  np.testing.assert_array_equal(first["camera_k"][0][[0, 1, 0, 1], [0, 1, 2, 2]],
                                [intrinsics["fx"], intrinsics["fy"], intrinsics["cx"], intrinsics["cy"]])
  settings = loader.SampleSettings.from_config(config)
  expected, _, _ = loader.encode_sample(source[1], settings, rng=None)
  for key, value in expected.items():
    np.testing.assert_array_equal(first[key][1], value, err_msg=key)
  # Two processes get the same number of batches and together every sample once.
  shards = [list(loader.iterate_eval_batches(source, config, batch_size=2, shard_index=i, shard_count=2,
                                             with_targets=False, workers=0)) for i in range(2)]
  assert len(shards[0]) == len(shards[1]) == 3 and "hm" not in shards[0][0]
  shard_paths = [p for shard in shards for b in shard for p in b["image_path"] if p]
  assert sorted(shard_paths) == sorted(paths[:NUM_SAMPLES])


def test_shard_batch_places_the_batch_on_a_mesh():
  script = textwrap.dedent("""
      import jax, numpy as np
      from jax.sharding import Mesh
      from centerpose_jax import mesh as mesh_lib
      mesh = Mesh(np.array(jax.devices()), ("data",))
      batch = {"input": np.arange(8 * 4 * 4 * 3, dtype=np.float32).reshape(8, 4, 4, 3),
               "ind": np.arange(8 * 2, dtype=np.int32).reshape(8, 1, 2), "image_path": ["a"] * 8}
      placed = mesh_lib.shard_batch(batch, mesh)
      assert placed["image_path"] == batch["image_path"]
      for key in ("input", "ind"):
        array = placed[key]
        assert array.shape == batch[key].shape and array.dtype == batch[key].dtype
        assert len(array.addressable_shards) == 8
        for shard in array.addressable_shards:
          assert shard.data.shape[0] == 1
          np.testing.assert_array_equal(np.asarray(shard.data), batch[key][shard.index])
        np.testing.assert_array_equal(np.asarray(array), batch[key])
      print("ok")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
  assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
