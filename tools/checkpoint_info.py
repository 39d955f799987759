"""Print what a checkpoint holds: step, epoch, parameter count and a fingerprint of the weights.

  python tools/checkpoint_info.py DIR [--encryption_key KEY]

DIR is a training results folder, a checkpoint folder (its latest checkpoint is shown), one checkpoint's
step folder, or a converted TAO checkpoint (tools/convert_checkpoint.py's output). One line each:

  checkpoint: <step folder or variables folder>
  step: <training batches consumed>        (n/a for a converted checkpoint)
  epoch: <epochs completed>                (n/a for a converted checkpoint)
  parameters: <number of parameters>
  batch_stats: <number of BatchNorm statistics values>
  fingerprint: <SHA-256 hex of all params and batch statistics>

Equal fingerprints mean bit-identical weights (e.g. a resumed run and an uninterrupted one). An encrypted
checkpoint (trained with `encryption_key`) needs `--encryption_key` with the same key.
"""

import argparse
import pathlib
import sys

from centerpose_jax import encryption
from centerpose_jax.training import checkpoint
from centerpose_jax.training import state


def describe(path, encryption_key=None) -> dict:
  """The printed fields of the checkpoint at `path` (see the module docstring), decrypted with
  `encryption_key` when encrypted."""
  path = pathlib.Path(path)
  variables = checkpoint.load_variables(path, encryption_key)
  info = {"checkpoint": str(path), "step": "n/a", "epoch": "n/a"}
  try:
    step_folder = checkpoint.find_checkpoint(path)
  except FileNotFoundError:
    step_folder = None  # a converted checkpoint: weights only
  if step_folder is not None and not (path / checkpoint.VARIABLES_SUBDIR).is_dir():
    meta = checkpoint.read_meta(step_folder, encryption_key)
    info.update(checkpoint=str(step_folder), step=meta["step"], epoch=meta["epoch"])
  info["parameters"] = state.parameter_count(variables["params"])
  info["batch_stats"] = state.parameter_count(variables["batch_stats"])
  info["fingerprint"] = checkpoint.fingerprint(variables)
  return info


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("path", help="results folder, checkpoint folder, step folder or converted checkpoint")
  parser.add_argument("--encryption_key", default=None, help="the key an encrypted checkpoint was written with")
  args = parser.parse_args(argv)
  try:
    info = describe(args.path, args.encryption_key)
  except (FileNotFoundError, encryption.EncryptionError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  for key, value in info.items():
    print(f"{key}: {value}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
