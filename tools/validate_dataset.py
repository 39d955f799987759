"""Check every label of a CenterPose dataset and print a summary.

  python tools/validate_dataset.py DIR [--category bike] [--num-symmetry N] [--evaluation]

DIR is an image + JSON folder (every folder under it is scanned; symbolic links leading outside it are not
followed) or a packed dataset. Every label is read and every image decoded, as training does before step 0.
Every problem is printed as `path: field: what is wrong` (docs/troubleshooting.md explains each), then a JSON
summary (images, objects, objects per image, images without JSON, labels without image, links not followed,
invalid and unreadable images, missing optional fields). The exit code is 1 if any problem was found (or no
image + JSON pair), else 0.
`--num-symmetry` > 1 (default: the category config's, chair 4, bottle 12, else 1) also requires the 3D fields
that symmetry copies use; `--evaluation` requires what every evaluation metric reads (projection matrix, 3D
fields) and checks the optional AR_data, visibility and camera size when present.
"""

import argparse
import json
import sys

from centerpose_jax import categories
from centerpose_jax.data import annotations
from centerpose_jax.data import loader


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("path", help="dataset folder or packed dataset")
  parser.add_argument("--category", default="", help="dataset.category: gives the default --num-symmetry")
  parser.add_argument("--num-symmetry", type=int, default=None,
                      help="dataset.num_symmetry (default: the category's, categories.py: chair 4, bottle 12, else 1)")
  parser.add_argument("--evaluation", action="store_true", help="also require the evaluation-only fields")
  args = parser.parse_args(argv)
  try:
    source = loader.open_source(args.path)
  except (FileNotFoundError, ValueError) as error:
    print(error, file=sys.stderr)
    return 1
  num_symmetry = args.num_symmetry
  if num_symmetry is None:
    num_symmetry = categories.category(args.category).num_symmetry
  report = annotations.validate_source(source, needs_symmetry=num_symmetry > 1, needs_evaluation=args.evaluation)
  for problem in report.problems:
    print(problem)
  print(json.dumps(report.summary(), indent=2))
  return 1 if report.problems else 0


if __name__ == "__main__":
  sys.exit(main())
