"""Build the project's own textured demo object (a small "radio") as a GLB file: no third-party asset.

  python tools/make_demo_object.py --out results/object_demo/radio.glb

A 16 x 22 x 12 cm box body (y up, z front, metres) with a different printed face on each side (front: a speaker
ring and a label; back: vents; left and right: other colours and marks; top: an arrow pointing to the front), a red
knob on the top right of the front and a handle bar on the left side, so that every rotation of the object looks
different. One mesh, one 768x512 texture atlas (3 x 2 cells of 256 px) drawn with OpenCV.
"""

import argparse
import pathlib
import sys

import cv2
import numpy as np

BODY = np.array([0.16, 0.22, 0.12])  # metres (x width, y height, z depth)
CELL = 256
# Atlas cells (column, row) of the body's faces; cell (2, 1) holds solid colour patches.
_FACE_CELLS = {"+z": (0, 0), "-z": (1, 0), "-x": (2, 0), "+x": (0, 1), "+y": (1, 1), "-y": (2, 1)}
_KNOB_UV = ((2 + 0.75) / 3, (1 + 0.25) / 2)  # red patch centre (u right, v down, of the whole atlas)
_HANDLE_UV = ((2 + 0.75) / 3, (1 + 0.75) / 2)  # silver patch centre


def _cell(colour):
  return np.full((CELL, CELL, 3), colour, np.uint8)


def atlas() -> np.ndarray:
  """[512, 768, 3] uint8 RGB texture atlas."""
  front = _cell((40, 48, 64))
  cv2.circle(front, (128, 150), 80, (235, 190, 40), 18, cv2.LINE_AA)
  cv2.circle(front, (128, 150), 30, (235, 190, 40), -1, cv2.LINE_AA)
  cv2.rectangle(front, (20, 14), (236, 56), (230, 230, 230), -1)
  cv2.putText(front, "CPJ-1", (40, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (200, 30, 30), 3, cv2.LINE_AA)
  back = _cell((210, 110, 40))
  for row in range(40, 220, 30):
    cv2.rectangle(back, (40, row), (216, row + 12), (60, 35, 20), -1)
  left = _cell((60, 140, 80))
  for column in range(0, CELL, 64):
    cv2.rectangle(left, (column, 96), (column + 32, 160), (240, 240, 240), -1)
  right = _cell((120, 60, 150))
  cv2.putText(right, "R", (70, 190), cv2.FONT_HERSHEY_DUPLEX, 5, (250, 220, 250), 10, cv2.LINE_AA)
  top = _cell((200, 200, 195))
  cv2.fillConvexPoly(top, np.array([[128, 230], [60, 120], [196, 120]], np.int32), (30, 80, 200), cv2.LINE_AA)
  solids = _cell((35, 35, 35))  # bottom
  solids[:128, 128:] = (200, 20, 20)  # knob
  solids[128:, 128:] = (180, 185, 190)  # handle
  cells = {"+z": front, "-z": back, "-x": left, "+x": right, "+y": top, "-y": solids}
  image = np.zeros((2 * CELL, 3 * CELL, 3), np.uint8)
  for face, (column, row) in _FACE_CELLS.items():
    image[row * CELL:(row + 1) * CELL, column * CELL:(column + 1) * CELL] = cells[face]
  return image


def _body():
  """(vertices [24, 3], faces [12, 3], uv [24, 2]): the box body, four vertices per face, each face on its cell.

  A face's texture is upright when the face is seen from outside (for the top, the cell's bottom edge is at
  the front).
  """
  half = BODY / 2
  # Per face: outward axis, the face's "right" and "up" directions as seen from outside.
  frames = {"+z": ((0, 0, 1), (1, 0, 0), (0, 1, 0)), "-z": ((0, 0, -1), (-1, 0, 0), (0, 1, 0)),
            "+x": ((1, 0, 0), (0, 0, -1), (0, 1, 0)), "-x": ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
            "+y": ((0, 1, 0), (1, 0, 0), (0, 0, -1)), "-y": ((0, -1, 0), (1, 0, 0), (0, 0, 1))}
  vertices, faces, uv = [], [], []
  for face, (normal, right, up) in frames.items():
    normal, right, up = (np.array(vector, np.float64) for vector in (normal, right, up))
    column, row = _FACE_CELLS[face]
    base = len(vertices)
    for a, b in ((-1, -1), (1, -1), (1, 1), (-1, 1)):  # counter-clockwise seen from outside
      vertices.append((normal + a * right + b * up) * half)
      uv.append(((column + (a + 1) / 2) / 3, (row + (1 - b) / 2) / 2))
    faces += [(base, base + 1, base + 2), (base, base + 2, base + 3)]
  return np.array(vertices), np.array(faces), np.array(uv)


def build_mesh():
  """The demo object as a trimesh.Trimesh with its texture (PBR material, roughness 0.5), box centred at 0."""
  import trimesh  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  vertices, faces, uv = _body()
  half = BODY / 2
  knob = trimesh.creation.cylinder(radius=0.015, height=0.03, sections=24)
  knob.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0)))  # axis along y
  knob.apply_translation((0.045, half[1] + 0.015, 0.03))
  bar = trimesh.creation.box(extents=(0.02, 0.03, 0.09))
  bar.apply_translation((-half[0] - 0.035, 0.02, 0.0))
  posts = [trimesh.creation.box(extents=(0.035, 0.02, 0.015)) for _ in range(2)]
  for post, z in zip(posts, (-0.035, 0.035)):
    post.apply_translation((-half[0] - 0.0175, 0.02, z))
  parts = [(vertices, faces, uv)]
  for extra, patch in [(knob, _KNOB_UV), (bar, _HANDLE_UV)] + [(post, _HANDLE_UV) for post in posts]:
    parts.append((np.asarray(extra.vertices), np.asarray(extra.faces), np.tile(patch, (len(extra.vertices), 1))))
  all_vertices, all_faces, all_uv, offset = [], [], [], 0
  for part_vertices, part_faces, part_uv in parts:
    all_vertices.append(part_vertices)
    all_faces.append(part_faces + offset)
    all_uv.append(part_uv)
    offset += len(part_vertices)
  uv = np.concatenate(all_uv)
  uv[:, 1] = 1.0 - uv[:, 1]  # trimesh (glTF on export) counts v up from the bottom row
  material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(atlas()), roughnessFactor=0.5,
                                                 metallicFactor=0.0)
  mesh = trimesh.Trimesh(vertices=np.concatenate(all_vertices), faces=np.concatenate(all_faces), process=False,
                         visual=trimesh.visual.TextureVisuals(uv=uv, material=material))
  low, high = mesh.bounds
  mesh.apply_translation(-(low + high) / 2)
  return mesh


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output .glb file")
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  build_mesh().export(str(out))
  print(out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
