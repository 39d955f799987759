"""Generate a synthetic CenterPose dataset (TAO/Objectron format) of one category.

  python tools/make_synthetic_dataset.py --out DIR --category bike --num-train 400 --num-val 100 --seed 0
  python tools/make_synthetic_dataset.py --out DIR --category camera --num-train 0 --num-val 0 --sequences 4 \
      --sequence-frames 120 --fps 30 --moving-object

Writes DIR/train/ and DIR/val/ as NNNNNN.png + NNNNNN.json pairs and DIR/synthetic.json (the settings), and
prints a summary (images, objects, images per second, visibility and size statistics). With --sequences, also
DIR/sequences/: per sequence NNNN/ (its labelled frames), NNNN.mp4 and NNNN.json (camera intrinsics for
infer.py), and sequences/synthetic.json. The output depends only on the arguments; a folder generated with
another category, seed, image size, object count or sequence setting is refused.
"""

import argparse
import json
import os
import sys

from centerpose_jax import categories
from centerpose_jax.data import synthetic


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output folder (train/ and val/ are created in it)")
  parser.add_argument("--category", required=True, choices=categories.NAMES)
  parser.add_argument("--num-train", type=int, default=400)
  parser.add_argument("--num-val", type=int, default=100)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--width", type=int, default=240, help="image width in pixels")
  parser.add_argument("--height", type=int, default=320, help="image height in pixels")
  parser.add_argument("--max-objects", type=int, default=3, help="at most this many objects per image")
  parser.add_argument("--skip-existing", action="store_true",
                      help="keep images whose PNG and JSON already exist instead of rendering them again")
  parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                      help="rendering processes (default: up to 4 CPU cores); the output does not depend on it")
  parser.add_argument("--sequences", type=int, default=0,
                      help="video sequences to render under DIR/sequences/ (a camera moving around still objects)")
  parser.add_argument("--sequence-frames", type=int, default=120, help="frames per sequence")
  parser.add_argument("--fps", type=float, default=30.0, help="frames per second of the sequences")
  parser.add_argument("--moving-object", action="store_true",
                      help="in each sequence, the first object drives along the ground")
  args = parser.parse_args(argv)
  try:
    summary = synthetic.generate_dataset(args.out, args.category, args.num_train, args.num_val, args.seed,
                                         width=args.width, height=args.height, max_objects=args.max_objects,
                                         skip_existing=args.skip_existing, workers=args.workers)
    if args.sequences:
      summary["sequences"] = synthetic.generate_sequences(
          args.out, args.category, args.sequences, args.sequence_frames, args.seed, width=args.width,
          height=args.height, max_objects=args.max_objects, fps=args.fps, moving_object=args.moving_object,
          skip_existing=args.skip_existing, workers=args.workers)
  except ValueError as error:
    print(error, file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
