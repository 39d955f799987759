"""Checkpoints: save/restore of the whole state, weight loading from every kind of folder, half-written saves,
encryption at rest."""

import logging
import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from configs import default

from centerpose_jax import mesh as mesh_lib
from centerpose_jax import encryption
from centerpose_jax.models import architecture
from centerpose_jax import checkpoint
from centerpose_jax.training import optim
from centerpose_jax.training import state as state_lib
from centerpose_jax.models.tiny import TinyCenterPose
from standin import numpy_variables
from tools import checkpoint_info

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parents[1]


def _state(seed=0, precision="fp16"):
  model = TinyCenterPose()
  variables = numpy_variables(model, (1, 32, 32, 3), seed=seed)
  variables["batch_stats"] = jax.tree_util.tree_map(lambda x: x + 0.5, variables["batch_stats"])
  optimizer = optim.create_optimizer(default.get_config().train, batches_per_epoch=4)
  mesh = mesh_lib.create_mesh(jax.devices()[:1])
  state = state_lib.create_train_state(variables, optimizer, jax.random.PRNGKey(3), precision,
                                       mesh_lib.replicated_sharding(mesh))
  # Non-trivial values everywhere: step, optimizer moments, loss-scale counter.
  return state.replace(step=jnp.asarray(8, jnp.int32),
                       opt_state=jax.tree_util.tree_map(lambda x: x + 1, state.opt_state),
                       loss_scale={"scale": jnp.asarray(1024.0), "counter": jnp.asarray(17, jnp.int32)},
                       skipped_steps=jnp.asarray(2, jnp.int32))


def _assert_trees_equal(a, b):
  assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
  for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _no_missing_metadata_warning(caplog):
  """Reading a checkpoint logged no Orbax warning about a missing step metadata file (it did for every
  `<step>/state` before `checkpoint._stored_arrays`)."""
  assert not [record for record in caplog.records if "Metadata file does not exist" in record.getMessage()]


def test_save_restore_round_trip_and_donation_after_async_save(tmp_path, caplog):
  state = _state()
  expected = jax.tree_util.tree_map(np.array, state)  # copies: a view of a buffer would block its donation
  manager = checkpoint.CheckpointManager(tmp_path / "train")
  meta = {"epoch": 2, "data_iterator": {"epoch": 1, "grain": "{\"next\": 4}", "failed_samples": 0}, "seed": 0}
  manager.save(state, meta)
  # The state is donated to the next step right after an asynchronous save returns.
  jax.jit(lambda s: s.replace(params=jax.tree_util.tree_map(lambda x: x + 1, s.params)), donate_argnums=0)(state)
  assert jax.tree_util.tree_leaves(state.params)[0].is_deleted()
  manager.wait()
  abstract = jax.eval_shape(lambda: expected)
  with caplog.at_level(logging.WARNING):
    restored, restored_meta = checkpoint.CheckpointManager(tmp_path / "train").restore(abstract)
  _no_missing_metadata_warning(caplog)
  _assert_trees_equal(restored, expected)
  assert restored_meta == dict(meta, step=8)
  assert checkpoint.read_meta(tmp_path / "train" / "8")["epoch"] == 2


def test_load_variables_from_every_kind_of_folder(tmp_path, caplog):
  state = _state()
  expected = jax.device_get(state.variables())
  results = tmp_path / "results"
  manager = checkpoint.CheckpointManager(results / "train")
  manager.save(state, {"epoch": 1})
  manager.save(state.replace(step=jnp.asarray(12, jnp.int32)), {"epoch": 2})
  manager.wait()
  with caplog.at_level(logging.WARNING):
    for path in (results, results / "train", results / "train" / "12", results / "train" / "8"):
      _assert_trees_equal(checkpoint.load_variables(path), expected)
  _no_missing_metadata_warning(caplog)
  assert checkpoint.find_checkpoint(results) == results / "train" / "12"

  # tools/convert_checkpoint.py's layout: OUT/variables written by StandardCheckpointer.
  converted = tmp_path / "converted"
  writer = ocp.StandardCheckpointer()
  writer.save((converted / "variables").absolute(), expected)
  writer.wait_until_finished()
  for path in (converted, converted / "variables"):
    _assert_trees_equal(checkpoint.load_variables(path), expected)
  _assert_trees_equal(checkpoint.load_variables(converted, encryption_key="key"), expected)  # plain: read as is
  assert checkpoint.fingerprint(checkpoint.load_variables(converted)) == checkpoint.fingerprint(expected)

  with pytest.raises(FileNotFoundError):
    checkpoint.load_variables(tmp_path / "empty")


def _files(folder):
  return [p for p in sorted(folder.rglob("*")) if p.is_file()]


def test_encrypted_checkpoint_has_no_plaintext_and_needs_its_key(tmp_path):
  # Orbax compresses arrays, so plaintext bytes are only findable for incompressible (random-bit) values.
  secret = np.random.default_rng(5).bytes(4096)
  state = _state()
  state = state.replace(params=dict(state.params, secret=jnp.asarray(np.frombuffer(secret, np.float32))))
  expected = jax.tree_util.tree_map(np.array, state)
  meta = {"epoch": 2, "data_iterator": {"epoch": 1, "grain": "{\"next\": 4}", "failed_samples": 0}}

  plain = checkpoint.CheckpointManager(tmp_path / "plain")
  plain.save(state, meta)
  plain.wait()
  assert any(secret in p.read_bytes() for p in _files(tmp_path / "plain" / "8"))  # so the check below can fail

  results = tmp_path / "results"
  manager = checkpoint.CheckpointManager(results / "train", encryption_key="train key")
  manager.save(state, meta)
  manager.wait()
  files = _files(results / "train" / "8")
  assert {p.parent.name for p in files} >= {"state", "meta"}
  for path in files:
    assert secret not in path.read_bytes()
    assert encryption.is_encrypted_file(path) == (path.name != "_CHECKPOINT_METADATA"), path

  restored, restored_meta = checkpoint.CheckpointManager(results / "train", encryption_key="train key").restore(
      jax.eval_shape(lambda: expected))
  _assert_trees_equal(restored, expected)
  assert restored_meta == dict(meta, step=8)
  variables = checkpoint.load_variables(results, encryption_key="train key")
  _assert_trees_equal(variables, jax.device_get(state.variables()))
  info = checkpoint_info.describe(results, encryption_key="train key")
  assert (info["step"], info["epoch"], info["fingerprint"]) == (8, 2, checkpoint.fingerprint(variables))
  assert checkpoint_info.main([str(results)]) == 2  # no key: the error is printed, not raised
  assert not list(tmp_path.glob("**/*.tmp"))  # no temporary files left behind

  with pytest.raises(encryption.EncryptionError, match=r"8/state/_METADATA is encrypted; set encryption_key"):
    checkpoint.load_variables(results)
  with pytest.raises(encryption.EncryptionError, match=r"train/8/meta/metadata is encrypted; set encryption_key"):
    checkpoint.read_meta(results / "train" / "8")
  with pytest.raises(encryption.WrongKeyError,
                     match=r"train/8/meta/metadata was encrypted with a different encryption_key; check"):
    checkpoint.CheckpointManager(results / "train", encryption_key="other key").restore(
        jax.eval_shape(lambda: expected))


def test_fingerprint_sees_every_bit_of_params_and_batch_stats():
  variables = jax.device_get(_state().variables())
  reference = checkpoint.fingerprint(variables)
  assert reference == checkpoint.fingerprint(jax.tree_util.tree_map(np.copy, variables))
  for group in ("params", "batch_stats"):
    changed = jax.tree_util.tree_map(np.copy, variables)
    leaf = jax.tree_util.tree_leaves(changed[group])[0]
    leaf.reshape(-1).view(np.uint32)[0] ^= 1  # one bit of one value
    assert checkpoint.fingerprint(changed) != reference


_SAVE_THEN_DIE = textwrap.dedent("""
    import os, signal, sys
    import jax.numpy as jnp
    from orbax.checkpoint._src.path import atomicity
    from centerpose_jax import checkpoint
    from centerpose_jax.training.state import TrainState
    def state(step):
      return TrainState(step=jnp.asarray(step, jnp.int32), params={"w": jnp.full([64, 64], float(step))},
                        batch_stats={}, opt_state={}, loss_scale={}, rng=jnp.zeros([2], jnp.uint32),
                        skipped_steps=jnp.zeros([], jnp.int32))
    manager = checkpoint.CheckpointManager(sys.argv[1], encryption_key=sys.argv[2] or None)
    manager.save(state(1), {"epoch": 1})
    manager.wait()
    async def die(self):  # everything is written; killed just before the final rename
      os.kill(os.getpid(), signal.SIGKILL)
    atomicity.AtomicRenameTemporaryPath.finalize = die
    manager.save(state(2), {"epoch": 2})
    manager.wait()
""")


@pytest.mark.parametrize("key", [None, "train key"])
def test_checkpoint_killed_while_saving_is_ignored(tmp_path, key):
  directory = tmp_path / "train"
  result = subprocess.run([sys.executable, "-c", _SAVE_THEN_DIE, str(directory), key or ""], capture_output=True,
                          text=True, timeout=300, check=False, env=dict(os.environ, JAX_PLATFORMS="cpu",
                                                                        PYTHONPATH=str(REPO)))
  assert result.returncode == -9, result.stderr[-3000:]
  leftovers = [p for p in directory.iterdir() if p.name.startswith("2.")]
  assert leftovers and all(".orbax-checkpoint-tmp" in p.name for p in leftovers)  # the half-written save
  if key:  # one more, of a step that is not saved again below (the save of step 2 replaces its own leftover)
    shutil.copytree(leftovers[0], directory / "5.orbax-checkpoint-tmp")

  config = default.get_config()
  config.results_dir = str(tmp_path)
  assert checkpoint.resume_source(config) == (directory, [1])
  variables = checkpoint.load_variables(tmp_path, encryption_key=key)
  np.testing.assert_array_equal(variables["params"]["w"], np.ones([64, 64], np.float32))
  manager = checkpoint.CheckpointManager(directory, encryption_key=key)
  assert manager.all_steps() == [1]
  abstract = jax.eval_shape(lambda: state_lib.TrainState(
      step=jnp.zeros([], jnp.int32), params={"w": jnp.zeros([64, 64])}, batch_stats={}, opt_state={},
      loss_scale={}, rng=jnp.zeros([2], jnp.uint32), skipped_steps=jnp.zeros([], jnp.int32)))
  restored, meta = manager.restore(abstract)
  assert int(restored.step) == 1 and meta["epoch"] == 1
  # Training goes on: the next save of step 2 succeeds next to the leftover.
  manager.save(restored.replace(step=jnp.asarray(2, jnp.int32)), {"epoch": 2})
  manager.wait()
  assert manager.all_steps() == [1, 2]
  if key:  # with a key, interrupted saves (plaintext) are deleted; the new checkpoint is encrypted
    assert sorted(p.name for p in directory.iterdir()) == ["1", "2"]
    assert encryption.is_encrypted_file(directory / "2" / "state" / "_METADATA")


def test_restoring_into_another_architecture_names_both(tmp_path):
  """Issue 15, item 5 for resuming: the architecture recorded in the meta and the configured one are named (a
  mismatch is not mistaken for a damaged checkpoint)."""
  manager = checkpoint.CheckpointManager(tmp_path / "train", asynchronous=False)
  manager.save(_state(precision="fp32"), {"epoch": 1, "model": {"model_type": "DLA34", "head_conv": 8}})
  wider = TinyCenterPose(width=16)
  variables = numpy_variables(wider, (1, 32, 32, 3))
  optimizer = optim.create_optimizer(default.get_config().train, batches_per_epoch=4)
  abstract = jax.eval_shape(lambda: state_lib.create_train_state(variables, optimizer, jax.random.PRNGKey(3), "fp32"))
  with pytest.raises(architecture.ArchitectureMismatchError) as raised:
    manager.restore(abstract, configured={"model_type": "DLA34", "head_conv": 16})
  assert str(raised.value).startswith(f"{tmp_path / 'train' / '8'}: the checkpoint holds a DLA34 (head_conv 8), the "
                                      "config asks for DLA34 (head_conv 16); set --config.model.head_conv=8\n  ['params']")
