"""Rendering a user's mesh into a labelled dataset: mesh loading, exact labels, the object mask and visibility,
the dataset writer (validator, resume, refusal, workers) and the demo object. Small frames (64-96 px)."""

import json

import cv2
import numpy as np
import pytest

from centerpose_jax import geometry
from centerpose_jax.data import annotations
from centerpose_jax.data import loader
from centerpose_jax.data import mitsuba_render
from centerpose_jax.data import object_dataset
from centerpose_jax.data import object_mesh
from centerpose_jax.data import procedural_textures
from centerpose_jax.errors import CenterPoseError
from centerpose_jax.evaluation import evaluator
from centerpose_jax.testing import detections
from tools import make_demo_object
from tools import render_object_dataset

BOX = np.array([0.2, 0.3, 0.1])  # metres
SMALL = object_dataset.RenderOptions(width=80, height=64, samples=4, max_depth=2)


def _textured_box():
  """A trimesh box of size BOX with a 2x2-colour texture planar-mapped on x, y (red at top left)."""
  import trimesh  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel

  box = trimesh.creation.box(extents=BOX)
  box = trimesh.Trimesh(box.vertices[box.faces].reshape(-1, 3), np.arange(36).reshape(12, 3), process=False)
  image = np.zeros((64, 64, 3), np.uint8)
  image[:32, :32], image[:32, 32:], image[32:, 32:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
  uv = (box.vertices[:, :2] + BOX[:2] / 2) / BOX[:2]  # trimesh's v counts up from the bottom row
  box.visual = trimesh.visual.TextureVisuals(uv=uv, image=Image.fromarray(image))
  return box


@pytest.fixture(scope="module")
def box_glb(tmp_path_factory):
  path = tmp_path_factory.mktemp("mesh") / "box.glb"
  _textured_box().export(str(path))
  return path


@pytest.fixture(scope="module")
def box_model(box_glb):
  mitsuba_render.select_variant()
  return object_mesh.load_object(box_glb)


@pytest.mark.parametrize("extension", [".glb", ".gltf", ".obj", ".ply", ".stl"])
def test_every_format_loads_with_its_box_and_colours(tmp_path, extension):
  mesh = _textured_box()
  if extension in (".ply", ".stl"):
    mesh.visual = mesh.visual.to_color()  # PLY keeps vertex colours, STL none
  path = tmp_path / f"object{extension}"
  mesh.export(str(path))
  model = object_mesh.load_object(path)
  np.testing.assert_allclose(model.size, BOX, atol=1e-6)
  points = np.concatenate([part.vertices for part in model.parts])
  np.testing.assert_allclose(points.min(axis=0), -BOX / 2, atol=1e-6)
  if extension in (".glb", ".gltf", ".obj"):
    textured = [part for part in model.parts if part.texture is not None]
    assert textured and textured[0].uv.shape == (len(textured[0].vertices), 2)
    texture = textured[0].texture
    np.testing.assert_allclose(texture[5, 5], (1, 0, 0), atol=0.02)  # red, top left, linear RGB
  elif extension == ".ply":
    assert model.parts[0].vertex_colours is not None


def test_unit_and_axes_options(box_glb):
  np.testing.assert_allclose(object_mesh.load_object(box_glb, unit="cm").size, BOX / 100, atol=1e-9)
  np.testing.assert_allclose(object_mesh.load_object(box_glb, unit="0.5").size, BOX / 2, atol=1e-7)
  # A z-up file whose front is -y: the file's z extent becomes the height, its y extent the depth.
  np.testing.assert_allclose(object_mesh.load_object(box_glb, up="+z", front="-y").size, BOX[[0, 2, 1]], atol=1e-7)
  rotation = object_mesh.axes_rotation("+z", "-y")
  np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
  assert np.linalg.det(rotation) == pytest.approx(1.0)
  with pytest.raises(CenterPoseError, match="perpendicular"):
    object_mesh.axes_rotation("+y", "-y")
  with pytest.raises(CenterPoseError, match="unit"):
    object_mesh.load_object(box_glb, unit="furlong")
  with pytest.raises(CenterPoseError, match="unsupported mesh format"):
    object_mesh.load_object(box_glb.with_suffix(".fbx"))


def _scene(model, props=(), offset_x=0.0):
  """A fixed camera 0.9 m in front of the box (its centre 0.15 m up), looking at it; `offset_x` slides the box."""
  world_to_camera = object_dataset.synthetic.look_at(np.array([0.0, 0.45, 0.9]), np.array([0.0, 0.15, 0.0]), 0.0)
  object_to_world = np.eye(4)
  object_to_world[:3, 3] = (offset_x, 0.15, 0.0)
  return mitsuba_render.Scene(
      width=96, height=80, focal=110.0, world_to_camera=world_to_camera, object_parts=model.parts,
      object_to_world=object_to_world, props=list(props), environment=np.full(3, 0.8), lights=[], samples=2,
      max_depth=2)


def _occluder_part(centre, size):
  import trimesh  # pylint: disable=import-outside-toplevel

  box = trimesh.creation.box(extents=size)
  box.apply_translation(centre)
  return object_mesh.Part(vertices=np.asarray(box.vertices, np.float32), faces=np.asarray(box.faces, np.uint32),
                          normals=np.asarray(box.vertex_normals, np.float32), uv=None, texture=None,
                          vertex_colours=None, face_colours=None, base_colour=np.full(3, 0.5, np.float32),
                          roughness=0.5, metallic=0.0)


def test_visibility_is_one_unoccluded_and_drops_behind_an_occluder(box_model):
  corners = geometry.cuboid_vertices(box_model.size)[1:]
  clear = mitsuba_render.render(_scene(box_model), corners)
  assert clear.visibility == 1.0 and clear.silhouette_pixels > 300
  # A 10 cm cube halfway between the camera and the box, in front of the box's left half.
  occluder = _occluder_part((-0.05, 0.3, 0.45), (0.1, 0.1, 0.1))
  hidden = mitsuba_render.render(_scene(box_model, [occluder]), corners)
  assert 0.2 < hidden.visibility < 0.9
  assert hidden.silhouette_pixels == clear.silhouette_pixels
  assert not (hidden.object_mask & ~clear.object_mask).any()
  # Half out of the image: the cut part counts as hidden (the silhouette is measured on a larger canvas).
  cut = mitsuba_render.render(_scene(box_model, offset_x=0.45), corners)
  assert 0.2 < cut.visibility < 0.8


def _hull_and_box(annotation):
  corners = np.array(annotation["objects"][0]["projected_cuboid"])[1:]
  return cv2.convexHull(corners.astype(np.float32)), corners.min(axis=0), corners.max(axis=0)


@pytest.fixture(scope="module")
def clear_frames(box_model):
  """Three random frames of the box without clutter, its centre near the image centre."""
  options = object_dataset.RenderOptions(width=96, height=80, samples=4, max_depth=2, span=(0.3, 0.5), aim=0.1,
                                         distractors=(0, 0), occluder_probability=0.0)
  return [object_dataset.render_frame(np.random.default_rng(seed), box_model, options, "box") for seed in range(3)]


def test_projected_cuboid_is_the_projection_of_keypoints_3d(clear_frames):
  for _, annotation, _ in clear_frames:
    camera = annotation["camera_data"]
    intrinsics = camera["intrinsics"]
    obj = annotation["objects"][0]
    camera_k = geometry.camera_matrix(intrinsics["fx"], intrinsics["fy"], intrinsics["cx"], intrinsics["cy"])
    keypoints = np.array(obj["keypoints_3d"])
    projected = np.array(obj["projected_cuboid"])
    np.testing.assert_allclose(geometry.project_with_intrinsics(geometry.opengl_to_opencv(keypoints), camera_k),
                               projected, atol=1e-3)
    np.testing.assert_allclose(geometry.project_with_projection_matrix(
        keypoints, camera["camera_projection_matrix"], camera["width"], camera["height"]), projected, atol=1e-3)
    # keypoints_3d: the tight box of the mesh, posed; the object stands on the AR plane.
    pose = geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
    np.testing.assert_allclose(geometry.apply_transform(pose, geometry.cuboid_vertices(BOX)), keypoints, atol=1e-6)
    np.testing.assert_allclose(obj["scale"], BOX, atol=1e-6)
    plane = annotation["AR_data"]
    bottom = keypoints[[1, 2, 5, 6]]
    np.testing.assert_allclose((bottom - plane["plane_center"]) @ np.array(plane["plane_normal"]), 0.0, atol=1e-6)


def test_evaluator_scores_the_ground_truth_as_perfect(clear_frames):
  """Ground truth fed back as relative-scale predictions scores AP 1: the labels are what the evaluator reads."""
  objectron = evaluator.Evaluator(num_symmetry=1)
  for _, annotation, _ in clear_frames:
    objectron.add_frame([detections.from_label(annotation["objects"][0], score=0.9)], annotation)
  results = objectron.finalize()
  assert results["num_matched"] == results["num_gt"] == len(clear_frames)
  assert results["headline"]["3DIoU_AP@0.5"] == pytest.approx(1.0)


def test_object_mask_lies_in_the_projected_hull_and_touches_its_box(clear_frames):
  for image, annotation, rendering in clear_frames:
    assert image.shape == (80, 96, 3) and image.dtype == np.uint8
    assert rendering.visibility == annotation["objects"][0]["visibility"] == 1.0
    hull, low, high = _hull_and_box(annotation)
    rows, columns = np.nonzero(rendering.object_mask)
    assert len(rows) > 100
    distances = [cv2.pointPolygonTest(hull, (float(x), float(y)), True) for x, y in zip(columns, rows)]
    assert min(distances) > -1e-3  # every pixel centre the object covers is inside the hull
    # The box is a box: its silhouette reaches the 2D box of its projected corners (to the pixel centre grid).
    np.testing.assert_allclose([columns.min(), rows.min()], np.ceil(low), atol=1)
    np.testing.assert_allclose([columns.max(), rows.max()], np.floor(high), atol=1)


def test_texture_is_applied_the_right_way_round(box_model):
  """Seen from the front, the texture's red quarter is top left, blue bottom right (linear light, unlit check)."""
  rendering = mitsuba_render.render(_scene(box_model), geometry.cuboid_vertices(box_model.size)[1:])
  rgb = rendering.rgba[..., :3]
  rows, columns = np.nonzero(rendering.object_mask)
  top, left = rows.min() + 4, columns.min() + 4
  bottom, right = rows.max() - 4, columns.max() - 4
  assert np.argmax(rgb[top, left]) == 0 and np.argmax(rgb[top, right]) == 1
  assert np.argmax(rgb[bottom, right]) == 2


def _write_photos(folder, count):
  folder.mkdir()
  for index in range(count):
    cv2.imwrite(str(folder / f"photo_{index}.jpg"), np.full((40, 60, 3), 20 * index, np.uint8))


def test_background_photos_are_split_so_validation_ones_are_unseen(tmp_path):
  _write_photos(tmp_path / "photos", 7)
  backgrounds = object_dataset.find_backgrounds(tmp_path / "photos")
  assert len(backgrounds.train) == 6 and len(backgrounds.val) == 1
  assert not set(backgrounds.train) & set(backgrounds.val)
  with pytest.raises(CenterPoseError, match="no such background folder"):
    object_dataset.find_backgrounds(tmp_path / "missing")


def test_cli_writes_a_valid_dataset_and_resumes(tmp_path, box_glb, capsys):
  _write_photos(tmp_path / "photos", 5)
  out = tmp_path / "data"
  argv = ["--mesh", str(box_glb), "--out", str(out), "--num-train", "3", "--num-val", "1", "--size", "64x64",
          "--samples", "4", "--max-depth", "2", "--workers", "1", "--backgrounds", str(tmp_path / "photos")]
  assert render_object_dataset.main(argv) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["splits"]["train"]["rendered"] == 3 and summary["frames_per_second"] > 0
  report = annotations.validate_source(loader.open_source(str(out)), needs_symmetry=True, needs_evaluation=True)
  assert report.problems == [] and report.summary()["objects"] == 4
  settings = json.loads((out / "synthetic.json").read_text())
  assert settings["options"]["span"] == list(object_dataset.RenderOptions().span)
  assert settings["backgrounds"]["val"] == ["photo_4.jpg"]
  # A rerun renders only what is missing; a frame's image without its JSON counts as missing.
  (out / "train" / "000001.json").unlink()
  first = (out / "train" / "000000.png").read_bytes()
  assert render_object_dataset.main(argv) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["splits"]["train"]["rendered"] == 1 and summary["splits"]["val"]["skipped"] == 1
  assert (out / "train" / "000000.png").read_bytes() == first
  # Other settings are refused, naming what changed.
  assert render_object_dataset.main(argv + ["--seed", "3"]) == 2
  assert "seed 0, now 3" in capsys.readouterr().err
  assert render_object_dataset.main(argv[:-2]) == 2
  assert "backgrounds" in capsys.readouterr().err


def test_parallel_workers_write_the_same_labels(tmp_path, box_glb):
  summaries = []
  for workers in (1, 2):
    summaries.append(object_dataset.generate_dataset(tmp_path / f"w{workers}", box_glb, 2, 0, seed=5,
                                                     options=SMALL, variant="scalar_rgb", workers=workers,
                                                     progress=False))
  assert summaries[1]["workers"] == 2
  for index in range(2):
    labels = [json.loads((tmp_path / f"w{workers}" / "train" / f"{index:06d}.json").read_text())
              for workers in (1, 2)]
    assert labels[0] == labels[1]


def test_demo_object_is_textured_and_asymmetric(tmp_path):
  path = tmp_path / "radio.glb"
  assert make_demo_object.main(["--out", str(path)]) == 0
  model = object_mesh.load_object(path)
  assert len(model.parts) == 1 and model.parts[0].texture is not None
  # The body, plus the knob on top and the handle bar reaching 4.5 cm out of the left side.
  body = make_demo_object.BODY
  np.testing.assert_allclose(model.size, body + (0.045, 0.03, 0.0), atol=1e-6)
  atlas = make_demo_object.atlas()
  cells = [atlas[row * 256:(row + 1) * 256, column * 256:(column + 1) * 256].mean(axis=(0, 1))
           for row in range(2) for column in range(3)]
  assert min(np.abs(a - b).max() for i, a in enumerate(cells) for b in cells[i + 1:]) > 10  # every face differs


def test_render_options_are_checked(capsys, box_glb, tmp_path):
  with pytest.raises(CenterPoseError, match="low <= high"):
    object_dataset.RenderOptions(elevation=(60.0, 10.0))
  with pytest.raises(CenterPoseError, match="span"):
    object_dataset.RenderOptions(span=(0.2, 1.5))
  assert render_object_dataset.main(["--mesh", str(box_glb), "--out", str(tmp_path), "--span", "0.5,0.2"]) == 2
  assert "span" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    render_object_dataset.main(["--mesh", str(box_glb), "--out", str(tmp_path), "--size", "64"])


@pytest.mark.parametrize("kind", procedural_textures.KINDS)
def test_procedural_texture_contrast(kind):
  full = procedural_textures.texture(np.random.default_rng(4), 32, 32, kind)
  soft = procedural_textures.texture(np.random.default_rng(4), 32, 32, kind, contrast=0.25)
  assert full.shape == (32, 32, 3) and full.dtype == np.float32 and 0 <= full.min() and full.max() <= 1
  np.testing.assert_allclose(soft.std(axis=(0, 1)), 0.25 * full.std(axis=(0, 1)), atol=1e-5)
  np.testing.assert_allclose(soft.mean(axis=(0, 1)), full.mean(axis=(0, 1)), atol=1e-5)
