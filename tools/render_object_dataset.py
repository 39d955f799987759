"""Render a labelled, domain-randomised CenterPose dataset of your own object from its 3D model (CPU only).

  python tools/render_object_dataset.py --mesh my_object.glb --out DIR --num-train 800 --num-val 100 \
      [--backgrounds PHOTOS] [--size 512x512] [--seed 0] [--num-symmetry 1] [--unit m] [--up +y] [--front +z]

Reads OBJ/PLY/GLB/GLTF/STL with their textures and materials, path traces frames with Mitsuba 3 and writes
DIR/train/ and DIR/val/ as NNNNNN.png + NNNNNN.json pairs in the CenterPose/Objectron format, and DIR/synthetic.json
(every setting and randomisation range). A rerun renders only the missing frames; a folder made with other settings
is refused. Every randomisation range is an option below (pairs as LOW,HIGH). docs/custom-objects.md has the
guide: meshes, scale and axes, symmetry, how many frames, mixing in real photos.
"""

import argparse
import dataclasses
import json
import os
import sys
import typing

from centerpose_jax.data import mitsuba_render
from centerpose_jax.data import object_dataset
from centerpose_jax.data import object_mesh
from centerpose_jax.errors import CenterPoseError


def _size(text):
  try:
    width, height = (int(value) for value in text.lower().split("x"))
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 512x512, got {text!r}") from None
  return width, height


def _pair(kind):
  def parse(text):
    try:
      low, high = (kind(value) for value in text.split(","))
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected LOW,HIGH, got {text!r}") from None
    return low, high
  return parse


def _add_render_options(parser):
  """One option per `RenderOptions` field (but the image size, which is --size)."""
  group = parser.add_argument_group("randomisation ranges and render settings (defaults in brackets)")
  for field in dataclasses.fields(object_dataset.RenderOptions):
    if field.name in ("width", "height"):
      continue
    if typing.get_origin(field.type) is tuple:
      kind, metavar = _pair(typing.get_args(field.type)[0]), "LOW,HIGH"
      default_text = ",".join(str(value) for value in field.default)
    else:
      kind, metavar, default_text = field.type, None, str(field.default)
    group.add_argument("--" + field.name.replace("_", "-"), dest=field.name, type=kind, default=field.default,
                       metavar=metavar, help=f"{field.metadata['help']} [{default_text}]")


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--mesh", required=True, help="the object's mesh: " + ", ".join(object_mesh.MESH_EXTENSIONS))
  parser.add_argument("--out", required=True, help="output folder (train/ and val/ are created in it)")
  parser.add_argument("--num-train", type=int, default=800)
  parser.add_argument("--num-val", type=int, default=100)
  parser.add_argument("--backgrounds", help="folder of background photos (default: procedural backgrounds); "
                      f"every {object_dataset.VAL_PHOTO_EVERY}th photo is kept for validation only")
  parser.add_argument("--val-backgrounds", help="separate folder of validation background photos")
  parser.add_argument("--size", type=_size, default=(512, 512), help="image WIDTHxHEIGHT in pixels [512x512]")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-symmetry", type=int, default=1,
                      help="rotational symmetry order about the up axis (recorded; train with dataset.num_symmetry)")
  parser.add_argument("--unit", default="m", help="the mesh file's unit: " + ", ".join(object_mesh.UNITS)
                      + ", or metres per unit [m]")
  parser.add_argument("--up", default="+y", choices=object_mesh.AXES, help="the mesh's up axis [+y]")
  parser.add_argument("--front", default="+z", choices=object_mesh.AXES, help="the mesh's front axis [+z]")
  parser.add_argument("--name", help="class name written in the labels [the mesh file's name]")
  parser.add_argument("--variant", default="auto", choices=mitsuba_render.VARIANTS,
                      help="Mitsuba variant: auto = llvm_ad_rgb when an LLVM library is installed, else scalar_rgb")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                      help="rendering processes [one per CPU core]; the output does not depend on it")
  _add_render_options(parser)
  args = parser.parse_args(argv)
  values = vars(args)
  try:
    options = object_dataset.RenderOptions(
        width=args.size[0], height=args.size[1],
        **{field.name: values[field.name] for field in dataclasses.fields(object_dataset.RenderOptions)
           if field.name not in ("width", "height")})
    summary = object_dataset.generate_dataset(
        args.out, args.mesh, args.num_train, args.num_val, args.seed, options, unit=args.unit, up=args.up,
        front=args.front, name=args.name, num_symmetry=args.num_symmetry,
        backgrounds=object_dataset.find_backgrounds(args.backgrounds, args.val_backgrounds), variant=args.variant,
        workers=args.workers)
  except CenterPoseError as error:
    print(error, file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
