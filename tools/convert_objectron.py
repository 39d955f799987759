"""Convert a category of Google's Objectron release into the CenterPose dataset format (no TensorFlow).

  python tools/convert_objectron.py --src DIR --category bike --split train --out OUT
  python tools/convert_objectron.py --src DIR --category bike --split test --out OUT --source records

DIR is a local copy of the `objectron` bucket (index/, annotations/, videos/ or v1/records_shuffled/; see
docs/data-preparation.md). Writes OUT/<split>/<sequence>/<frame>.jpg + .json (docs/data-format.md), moving each
sequence into place when complete, so a rerun skips finished sequences. Failed sequences are printed and
counted; the summary is printed as JSON and written to OUT/conversion_<split>.json. Exit code 0 when every
sequence converted, 1 when some failed, 2 for a bad command line or release layout.
"""

import argparse
import json
import os
import sys

from centerpose_jax import categories
from centerpose_jax import errors
from centerpose_jax.objectron import convert
from centerpose_jax.objectron import extras
from centerpose_jax.objectron import release


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--src", required=True, help="local copy of the Objectron release")
  parser.add_argument("--category", required=True, choices=categories.NAMES)
  parser.add_argument("--split", default="train", choices=release.SPLITS)
  parser.add_argument("--out", required=True, help="output folder (OUT/<split>/ is the dataset folder)")
  parser.add_argument("--source", default="videos", choices=convert.SOURCES,
                      help="videos: annotations + videos (default); records: v1/records_shuffled tf.train.Examples")
  parser.add_argument("--frame-stride", type=int, default=15,
                      help="take every n-th video frame (15 for CenterPose, 1 for tracking); records take all")
  parser.add_argument("--resize", default="1/2.4",
                      help="written image size: 1/D (divide), a factor, or WxH (default 1/2.4: 1440x1920 -> 600x800)")
  parser.add_argument("--image-format", default="jpg", choices=convert.IMAGE_FORMATS)
  parser.add_argument("--jpeg-quality", type=int, default=95)
  parser.add_argument("--labels", default=None,
                      help="NVlabs CenterPose's data/label folder: bug lists, cup/mug handle and chair symmetry labels")
  parser.add_argument("--max-sequences", type=int, default=None,
                      help="convert only the first N sequences of the index (record files with --source records)")
  parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                      help="sequences converted in parallel (default: up to 4 CPU cores)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  try:
    labels = extras.CategoryLabels.load(args.labels, args.category) if args.labels else None
    options = convert.Options(frame_stride=args.frame_stride, resize=convert.Resize.parse(args.resize),
                              image_format=args.image_format, jpeg_quality=args.jpeg_quality, labels=labels)
    summary = convert.convert(args.src, args.category, args.split, args.out, source=args.source, options=options,
                              max_sequences=args.max_sequences, workers=args.workers, progress=not args.no_progress)
  except errors.CenterPoseError as error:
    print(error, file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  if args.category in extras.REQUIRED_LISTS and labels is None:
    print(f"note: no --labels, so {args.category} objects carry no NVlabs manual labels "
          f"({'mug/handle' if args.category == 'cup' else 'symmetric'}); see docs/data-preparation.md",
          file=sys.stderr)
  return 1 if summary["units"]["failed"] else 0


if __name__ == "__main__":
  sys.exit(main())
