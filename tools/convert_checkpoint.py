"""Convert a TAO CenterPose checkpoint into Flax variables.

  python tools/convert_checkpoint.py --checkpoint model.pth --arch DLA34 --out results/tao_dla34

--checkpoint is a TAO Lightning `.pth`, a plain PyTorch state_dict `.pth` or an `.npz` of a state_dict, read
without torch and without running code from the file (`centerpose_jax.convert.pth_reader`; a file whose pickle
would call anything but tensor and container builders is refused, naming what it calls). The model is TAO's
default for --arch (ConvGRU on, head_conv 256). Writes the variables ({'params', 'batch_stats'}) with orbax's
StandardCheckpointer to OUT/variables and a summary to OUT/conversion.json. Unknown, missing or misshaped keys
stop with the full list; an encrypted TAO checkpoint must be decrypted by TAO first.

Converting is optional: every `checkpoint` option (and `train.pretrained_model_path`,
`model.backbone.pretrained_backbone_path`) also takes the `.pth` / `.npz` itself and converts it on the fly.
"""

import argparse
import json
import pathlib
import sys

import jax
import orbax.checkpoint as ocp

from centerpose_jax import errors
from centerpose_jax.convert import pytorch
from centerpose_jax.models import registry


def convert(checkpoint: str, arch: str, out: str, overwrite: bool = False) -> dict:
  """Converts `checkpoint`, writes OUT/variables and OUT/conversion.json; returns the summary."""
  source = pathlib.Path(checkpoint).resolve()
  out_dir = pathlib.Path(out).resolve()
  if (out_dir / "variables").exists() and not overwrite:
    raise FileExistsError(f"{out_dir / 'variables'} exists; pass --overwrite to replace it")
  file_state = pytorch.read_state_dict(source)
  conversion = pytorch.convert_state_dict(file_state, arch)
  out_dir.mkdir(parents=True, exist_ok=True)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(out_dir / "variables", conversion.variables, force=overwrite)
  checkpointer.wait_until_finished()
  summary = {
      "arch": arch,
      "source": str(source),
      "keys_in_file": len(file_state),
      "keys_converted": len(conversion.used_keys),
      "keys_unused": len(conversion.unused_keys),
      "unused_key_reasons": pytorch.UNUSED_TAO_KEYS,
      "leaves": {name: len(jax.tree.leaves(tree)) for name, tree in conversion.variables.items()},
      "parameters": sum(leaf.size for leaf in jax.tree.leaves(conversion.variables["params"])),
  }
  (out_dir / "conversion.json").write_text(json.dumps(summary, indent=1) + "\n")
  return summary


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="TAO .pth checkpoint or .npz state_dict")
  parser.add_argument("--arch", required=True, choices=registry.TAO_BACKBONES)
  parser.add_argument("--out", required=True, help="output folder (gets variables/ and conversion.json)")
  parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT/variables")
  args = parser.parse_args(argv)
  try:
    summary = convert(args.checkpoint, args.arch, args.out, args.overwrite)
  except (errors.CenterPoseError, FileExistsError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 2
  print(f"converted {summary['keys_converted']} keys ({summary['keys_unused']} unused TAO keys skipped, "
        f"{summary['parameters']:,} parameters) -> {pathlib.Path(args.out) / 'variables'}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
