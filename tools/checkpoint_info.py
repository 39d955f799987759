"""Print what a checkpoint holds: step, epoch, parameter count and a fingerprint of the weights, and the state
of every checkpoint of the folder.

  python tools/checkpoint_info.py DIR [--encryption_key KEY]

DIR is a training results folder, a checkpoint folder (its newest readable checkpoint is shown), one
checkpoint's step folder, or a converted TAO checkpoint (tools/convert_checkpoint.py's output). One line each:

  checkpoint: <step folder or variables folder>
  step: <training batches consumed>        (n/a for a converted checkpoint)
  epoch: <epochs completed>                (n/a for a converted checkpoint)
  model: <the architecture the checkpoint records> (n/a when it records none)
  parameters: <number of parameters>
  batch_stats: <number of BatchNorm statistics values>
  fingerprint: <SHA-256 hex of all params and batch statistics>

then, for a training checkpoint folder, one line per checkpoint, oldest first (every file is read):

  checkpoint <step>: ok, epoch <epoch>, fingerprint <first 16 hex digits>
  checkpoint <step>: damaged (<why it cannot be read>)
  checkpoint <step>: set aside as <step>.damaged by a resumed run

Equal fingerprints mean bit-identical weights (e.g. a resumed run and an uninterrupted one). An encrypted
checkpoint (trained with `encryption_key`) needs `--encryption_key` with the same key. Checkpoints written
with any device or process count are read on this machine's first device. Exit status: 0 when every
checkpoint is readable, 1 when one is damaged, 2 when none can be read (or the key is wrong or missing).
"""

import argparse
import pathlib
import sys

from absl import logging as absl_logging

from centerpose_jax import errors
from centerpose_jax.models import architecture
from centerpose_jax import checkpoint
from centerpose_jax.training import state


def _weights_info(variables, fingerprint=None) -> dict:
  return {"parameters": state.parameter_count(variables["params"]),
          "batch_stats": state.parameter_count(variables["batch_stats"]),
          "fingerprint": fingerprint or checkpoint.fingerprint(variables)}


def checkpoint_states(path, encryption_key=None) -> list:
  """Every checkpoint `path` names, oldest first: {"step", "folder", "state": "ok" | "damaged" | "set aside",
  and "meta", "variables", "fingerprint" when ok, "reason" when damaged}."""
  states = []
  step_folders = checkpoint.checkpoint_steps(path)
  for folder in reversed(step_folders):
    entry = {"step": int(folder.name), "folder": folder}
    try:
      variables = checkpoint.load_variables(folder, encryption_key)
      entry.update(variables=variables, fingerprint=checkpoint.fingerprint(variables),
                   meta=checkpoint.read_meta(folder, encryption_key), state="ok")
    except checkpoint.DamagedCheckpointError as error:
      entry.update(state="damaged", reason=error.reason)
    states.append(entry)
  for aside in sorted(step_folders[0].parent.glob(f"*{checkpoint.DAMAGED_SUFFIX}*")):
    step = aside.name.split(".")[0]
    if step.isdigit():
      states.append({"step": int(step), "folder": aside, "state": "set aside"})
  return sorted(states, key=lambda entry: entry["step"])


def describe(path, encryption_key=None) -> dict:
  """The printed fields of the checkpoint at `path` (see the module docstring), decrypted with
  `encryption_key` when encrypted; `checkpoints` holds `checkpoint_states` for a training checkpoint folder."""
  path = pathlib.Path(path)
  info = {"checkpoint": str(path), "step": "n/a", "epoch": "n/a", "model": "n/a"}
  if checkpoint.is_weights_only(path):
    variables = checkpoint.load_variables(path, encryption_key)  # a converted checkpoint: weights only
    info["model"] = architecture.describe(architecture.infer_architecture(variables)) + " (read off the weights)"
    return {**info, **_weights_info(variables)}
  states = checkpoint_states(path, encryption_key)
  readable = [entry for entry in states if entry["state"] == "ok"]
  if not readable:
    raise checkpoint.DamagedCheckpointError(path, "; ".join(
        f"step {entry['step']}: {entry.get('reason', entry['state'])}" for entry in states))
  newest = readable[-1]
  meta = newest["meta"]
  if meta.get("model"):
    info["model"] = architecture.describe(meta["model"])
  info.update(checkpoint=str(newest["folder"]), step=meta["step"], epoch=meta["epoch"],
              **_weights_info(newest["variables"], newest["fingerprint"]), checkpoints=states)
  return info


def _state_line(entry) -> str:
  if entry["state"] == "ok":
    return (f"checkpoint {entry['step']}: ok, epoch {entry['meta']['epoch']}, fingerprint "
            f"{entry['fingerprint'][:16]}")
  if entry["state"] == "damaged":
    return f"checkpoint {entry['step']}: damaged ({entry['reason']})"
  return f"checkpoint {entry['step']}: set aside as {entry['folder'].name} by a resumed run"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("path", help="results folder, checkpoint folder, step folder or converted checkpoint")
  parser.add_argument("--encryption_key", default=None, help="the key an encrypted checkpoint was written with")
  args = parser.parse_args(argv)
  absl_logging.set_verbosity(absl_logging.ERROR)  # Orbax's INFO / WARNING lines about the files it reads
  try:
    info = describe(args.path, args.encryption_key)
  except errors.CenterPoseError as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  states = info.pop("checkpoints", [])
  for key, value in info.items():
    print(f"{key}: {value}")
  for entry in states:
    print(_state_line(entry))
  return 1 if any(entry["state"] == "damaged" for entry in states) else 0


if __name__ == "__main__":
  sys.exit(main())
