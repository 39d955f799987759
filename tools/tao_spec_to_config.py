"""Turn a TAO CenterPose experiment spec (YAML) into a config file of ours.

  python tools/tao_spec_to_config.py experiment_specs/train.yaml > configs/my_bike.py

The written file imports configs/default.py and sets only the fields whose value differs from the default.
Unknown spec keys stop with the full list. (A spec can also be passed directly: --config=spec.yaml.)
"""

import argparse
import sys

from centerpose_jax import config as config_lib
from centerpose_jax.convert import tao_spec


def _value(config, path):
  node = config_lib.get_field(config, path)
  return node.to_dict() if hasattr(node, "to_dict") else node


def config_source(spec_path: str) -> str:
  """Python source of a config file equal to the spec: the default plus the differing fields."""
  config = tao_spec.load_tao_spec(spec_path)
  base = config_lib.get_config()
  lines = [f'"""Converted from the TAO spec {spec_path}."""', "", "from configs import default", "", "",
           "def get_config():", "  config = default.get_config()"]
  for path in config_lib.config_fields(base):
    value = _value(config, path)
    if value != _value(base, path):
      lines.append(f"  config.{path} = {value!r}")
  lines.append("  return config")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("spec", help="TAO experiment spec (.yaml)")
  args = parser.parse_args(argv)
  try:
    sys.stdout.write(config_source(args.spec))
  except tao_spec.SpecError as error:
    print(error, file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
