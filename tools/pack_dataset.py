"""Pack a CenterPose dataset folder into TFDS ArrayRecord shards (no TensorFlow needed).

  python tools/pack_dataset.py --src DIR/train --out PACKED_DIR

The samples are the folder's image + JSON pairs exactly as the loader discovers them (same order, image
file bytes unchanged). Point `dataset.train_data` (or val_data / test_data) at PACKED_DIR to train from
the shards; both give identical samples.
"""

import argparse
import json
import sys

from centerpose_jax.data import discovery
from centerpose_jax.data import tfds_builder


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--src", required=True, help="dataset folder (its leaf folders hold image + JSON pairs)")
  parser.add_argument("--out", required=True, help="output folder for the packed dataset")
  parser.add_argument("--split", default=tfds_builder.DEFAULT_SPLIT, help="TFDS split name to store")
  parser.add_argument("--num-shards", type=int, default=None, help="number of shard files (default: by size)")
  parser.add_argument("--overwrite", action="store_true", help="replace a packed dataset already in --out")
  args = parser.parse_args(argv)
  try:
    samples = discovery.FolderSamples(args.src)
    directory = tfds_builder.pack(samples, args.out, split=args.split, num_shards=args.num_shards,
                                  source=args.src, overwrite=args.overwrite)
  except (FileNotFoundError, FileExistsError, ValueError) as error:
    print(error, file=sys.stderr)
    return 2
  print(json.dumps({"source": args.src, "samples": len(samples), "split": args.split,
                    "dataset_dir": str(directory)}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
