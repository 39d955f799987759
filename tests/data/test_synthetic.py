"""Synthetic dataset generator: label consistency, TAO layout, scale recovery, determinism, the CLI."""

import json

import cv2
import numpy as np
import pytest

from centerpose_jax import categories
from centerpose_jax import geometry
from centerpose_jax.data import discovery
from centerpose_jax.data import synthetic
from centerpose_jax.data import synthetic_render
from centerpose_jax.data import synthetic_shapes
from centerpose_jax.evaluation import evaluator
from centerpose_jax.evaluation import metrics
from centerpose_jax.testing import detections
from tools import make_synthetic_dataset

WIDTH, HEIGHT = 120, 160


@pytest.fixture(scope="module")
def frames():
  """Two frames per category (category, image, annotation), small images."""
  result = []
  for category in categories.NAMES:
    for index in range(2):
      rng = synthetic.frame_rng(7, "train", index)
      image, annotation = synthetic.render_frame(rng, category, WIDTH, HEIGHT)
      result.append((category, image, annotation))
  return result


def _objects(frames):
  for _, _, annotation in frames:
    for obj in annotation["objects"]:
      yield annotation, obj


def test_every_category_renders_objects(frames):
  for category, image, annotation in frames:
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert image.std() > 5, category  # not a blank frame
    assert len(annotation["objects"]) <= 3
  assert sum(len(annotation["objects"]) for _, _, annotation in frames) >= len(categories.NAMES)


def test_layout_has_every_field_of_tao_synthetic_frames(frames, tao_reference):
  """Same keys as TAO's own synthetic evaluator frames, at every level."""
  reference = json.loads((tao_reference / "evaluator" / "frames" / "f01_synth.json").read_text())
  for _, _, annotation in frames:
    assert set(reference) <= set(annotation)
    assert set(reference["camera_data"]) <= set(annotation["camera_data"])
    assert set(reference["camera_data"]["intrinsics"]) == set(annotation["camera_data"]["intrinsics"])
    assert set(reference["AR_data"]) == set(annotation["AR_data"])
    for obj in annotation["objects"]:
      assert set(reference["objects"][0]) <= set(obj)
      assert np.shape(obj["projected_cuboid"]) == (9, 2) and np.shape(obj["keypoints_3d"]) == (9, 3)
    assert (annotation["camera_data"]["width"], annotation["camera_data"]["height"]) == (WIDTH, HEIGHT)


def test_projection_matrix_matches_tao_synthetic_frames(tao_reference):
  """geometry.projection_matrix_from_intrinsics reproduces the P of TAO's synthetic fixture frames."""
  paths = sorted((tao_reference / "evaluator" / "frames").glob("*_synth.json"))
  assert paths
  for path in paths:
    camera = json.loads(path.read_text())["camera_data"]
    intrinsics = camera["intrinsics"]
    projection = geometry.projection_matrix_from_intrinsics(
        intrinsics["fx"], intrinsics["fy"], intrinsics["cx"], intrinsics["cy"], camera["width"], camera["height"])
    np.testing.assert_allclose(projection, camera["camera_projection_matrix"], atol=1e-12, err_msg=path.name)


def test_labels_are_self_consistent(frames):
  for annotation, obj in _objects(frames):
    camera = annotation["camera_data"]
    intrinsics = camera["intrinsics"]
    keypoints = np.array(obj["keypoints_3d"])
    projected = np.array(obj["projected_cuboid"])
    # P-projection of the OpenGL points, Objectron NDC -> pixel mapping.
    through_p = geometry.project_with_projection_matrix(keypoints, camera["camera_projection_matrix"],
                                                        camera["width"], camera["height"])
    np.testing.assert_allclose(through_p, projected, atol=0.5)
    # K-projection of the same points in the OpenCV frame.
    camera_k = geometry.camera_matrix(intrinsics["fx"], intrinsics["fy"], intrinsics["cx"], intrinsics["cy"])
    through_k = geometry.project_with_intrinsics(geometry.opengl_to_opencv(keypoints), camera_k)
    np.testing.assert_allclose(through_k, projected, atol=0.5)
    # keypoints_3d is the pose applied to the box of size `scale`; objects are in front (OpenGL z < 0).
    pose = geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
    np.testing.assert_allclose(geometry.apply_transform(pose, geometry.cuboid_vertices(obj["scale"])), keypoints,
                               atol=1e-9)
    assert (keypoints[:, 2] < 0).all()
    assert 0.0 <= obj["visibility"] <= 1.0


def test_objects_stand_on_the_ar_plane(frames):
  """The object's y axis is the plane normal and its bottom face lies on the plane."""
  for annotation, obj in _objects(frames):
    centre = np.array(annotation["AR_data"]["plane_center"])
    normal = np.array(annotation["AR_data"]["plane_normal"])
    assert np.linalg.norm(normal) == pytest.approx(1.0)
    up = geometry.quaternion_to_matrix(obj["quaternion_xyzw"])[:, 1]
    np.testing.assert_allclose(up, normal, atol=1e-9)
    bottom = np.array(obj["keypoints_3d"])[[1, 2, 5, 6]]  # corners with y = -0.5
    np.testing.assert_allclose((bottom - centre) @ normal, 0.0, atol=1e-9)


@pytest.mark.parametrize("relative_scale", [0.37, 1.0, 4.2])
def test_evaluator_scale_recovery_from_ar_plane_is_exact(frames, relative_scale):
  """The evaluator's AR-plane factor turns a box right up to scale back into the metric ground truth."""
  for annotation, obj in _objects(frames):
    plane = annotation["AR_data"]
    prediction = np.array(obj["keypoints_3d"]) * relative_scale
    factor = metrics.plane_scale(prediction, plane["plane_center"], plane["plane_normal"])
    assert factor * relative_scale == pytest.approx(1.0, abs=1e-9)


def test_evaluator_scores_the_ground_truth_as_perfect(frames):
  """Ground truth fed back as relative-scale predictions (as PnP gives them) scores AP 1 and zero errors."""
  for tao_compatible in (False, True):
    objectron = evaluator.Evaluator(num_symmetry=1, tao_compatible=tao_compatible)
    for _, _, annotation in frames:
      predictions = [detections.from_label(obj, score=0.9) for obj in annotation["objects"]]
      objectron.add_frame(predictions, annotation)
    results = objectron.finalize()
    assert results["num_matched"] == results["num_gt"] > 0
    assert results["headline"]["3DIoU_AP@0.5"] == pytest.approx(1.0)
    assert results["headline"]["2DMPE"] < 1e-9
    assert results["means"]["iou"] > 0.999 and results["means"]["scale"] < 1e-9


def test_frames_are_deterministic_by_seed():
  image_a, annotation_a = synthetic.render_frame(synthetic.frame_rng(3, "val", 5), "chair", WIDTH, HEIGHT)
  image_b, annotation_b = synthetic.render_frame(synthetic.frame_rng(3, "val", 5), "chair", WIDTH, HEIGHT)
  image_c, _ = synthetic.render_frame(synthetic.frame_rng(4, "val", 5), "chair", WIDTH, HEIGHT)
  np.testing.assert_array_equal(image_a, image_b)
  assert annotation_a == annotation_b
  assert not np.array_equal(image_a, image_c)


@pytest.mark.parametrize("category", categories.NAMES)
def test_labelled_box_is_the_bounding_box_of_the_model(category):
  parts, size = synthetic_shapes.build_model(category, np.random.default_rng(0))
  points = np.concatenate([part.vertices for part in parts])
  np.testing.assert_allclose(points.min(axis=0), -size / 2, atol=1e-12)
  np.testing.assert_allclose(points.max(axis=0), size / 2, atol=1e-12)
  assert (size > 0.01).all() and (size < 2.5).all()  # metres


def _plain_style():
  return synthetic_render.Style(
      light_direction=np.array([0.0, 1.0, 0.0]), ambient=0.5, sky_top=np.full(3, 200.0),
      sky_horizon=np.full(3, 180.0), ground_colours=np.array([[90.0, 90.0, 90.0], [80.0, 80.0, 80.0]]),
      tile_size=0.3, fog_distance=10.0, shadow_strength=0.0, noise_sigma=0.0, blur=False)


def _render_box(offset_x=0.0):
  """A cereal box in front of a fixed camera; returns (image, empty-scene image, projected corners, visibility)."""
  parts, size = synthetic_shapes.build_model("cereal_box", np.random.default_rng(1))
  instance = synthetic_render.Instance(parts=parts, size=size, rotation=geometry.rotation_about_y(0.6)[:3, :3],
                                       translation=np.array([offset_x, size[1] / 2, 0.0]))
  camera_k = geometry.camera_matrix(150.0, 150.0, WIDTH / 2, HEIGHT / 2)
  world_to_camera = synthetic.look_at(np.array([0.0, 0.6, 1.2]), np.array([0.0, size[1] / 2, 0.0]), 0.0)
  image, visibility = synthetic_render.render(WIDTH, HEIGHT, camera_k, world_to_camera, [instance], _plain_style(),
                                              np.random.default_rng(0))
  empty, _ = synthetic_render.render(WIDTH, HEIGHT, camera_k, world_to_camera, [], _plain_style(),
                                     np.random.default_rng(0))
  corners = geometry.project_with_intrinsics(
      geometry.apply_transform(instance.to_camera(world_to_camera), geometry.cuboid_vertices(size)), camera_k)
  return image, empty, corners, visibility[0]


def test_drawn_object_fills_its_labelled_cuboid():
  """A box-shaped object covers exactly the convex hull of its projected cuboid (up to edge pixels)."""
  image, empty, corners, visibility = _render_box()
  drawn = np.any(image != empty, axis=2)
  hull = np.zeros(drawn.shape, np.uint8)
  cv2.fillConvexPoly(hull, np.round(cv2.convexHull(corners[1:].astype(np.float32))).astype(np.int32), 1)
  hull = hull.astype(bool)
  iou = np.count_nonzero(drawn & hull) / np.count_nonzero(drawn | hull)
  assert iou > 0.9
  assert visibility > 0.95


def test_visibility_counts_the_part_outside_the_image():
  *_, visibility_inside = _render_box()
  _, _, corners, visibility_cut = _render_box(offset_x=0.5)
  assert corners[1:, 0].max() > WIDTH  # partly outside on the right
  assert 0.3 < visibility_cut < 0.8 * visibility_inside


def test_cli_writes_train_and_val(tmp_path, capsys):
  out = tmp_path / "synth"
  argv = ["--out", str(out), "--category", "cup", "--num-train", "3", "--num-val", "2", "--seed", "0",
          "--width", "64", "--height", "80", "--workers", "1"]
  assert make_synthetic_dataset.main(argv) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["splits"]["train"]["images"] == 3 and summary["splits"]["val"]["images"] == 2
  assert summary["images_per_second"] > 0
  for split, count in (("train", 3), ("val", 2)):
    images = sorted((out / split).glob("*.png"))
    assert [path.stem for path in images] == [f"{index:06d}" for index in range(count)]
    for path in images:
      assert cv2.imread(str(path)).shape == (80, 64, 3)
      annotation = json.loads(path.with_suffix(".json").read_text())
      assert annotation["camera_data"]["width"] == 64
  # The same arguments give the same bytes, in parallel too; --skip-existing renders nothing again.
  again = tmp_path / "again"
  assert make_synthetic_dataset.main(["--out", str(again)] + argv[2:-1] + ["2"]) == 0
  for path in sorted(out.rglob("*.*")):
    assert path.read_bytes() == (again / path.relative_to(out)).read_bytes(), path
  capsys.readouterr()
  assert make_synthetic_dataset.main(argv + ["--skip-existing"]) == 0
  assert json.loads(capsys.readouterr().out)["splits"]["train"]["rendered"] == 0
  # A folder holding other images, or frames of other settings, is refused rather than mixed.
  assert make_synthetic_dataset.main(argv[:4] + ["--num-train", "1"] + argv[6:]) == 2
  assert make_synthetic_dataset.main(argv[:3] + ["bottle"] + argv[4:] + ["--skip-existing"]) == 2
  assert "category 'cup', now 'bottle'" in capsys.readouterr().err


def _object_to_world(annotation, obj) -> np.ndarray:
  """[4, 4] object -> world transform of a labelled object (the view matrix maps world -> OpenGL camera)."""
  view = np.array(annotation["camera_data"]["camera_view_matrix"])
  return np.linalg.inv(view) @ geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])


def test_cli_writes_labelled_sequences_with_a_smoothly_moving_camera_and_their_videos(tmp_path, capsys):
  out = tmp_path / "synth"
  frames, fps = 8, 10.0
  argv = ["--out", str(out), "--category", "camera", "--num-train", "0", "--num-val", "0", "--seed", "3",
          "--width", "96", "--height", "80", "--max-objects", "2", "--workers", "1", "--sequences", "2",
          "--sequence-frames", str(frames), "--fps", str(fps), "--moving-object"]
  assert make_synthetic_dataset.main(argv) == 0
  summary = json.loads(capsys.readouterr().out)["sequences"]
  assert (summary["sequences"], summary["frames"], summary["rendered"]) == (2, 2 * frames, 2 * frames)
  root = out / synthetic.SEQUENCES_FOLDER
  still_objects = 0
  assert not (out / "train").exists() and json.loads((root / "synthetic.json").read_text())["moving_object"]
  for sequence in ("0000", "0001"):
    labels = [json.loads((root / sequence / f"{i:06d}.json").read_text()) for i in range(frames)]
    sidecar = json.loads((root / f"{sequence}.json").read_text())
    assert sidecar["camera_data"]["intrinsics"] == labels[0]["camera_data"]["intrinsics"]
    assert (sidecar["fps"], sidecar["num_frames"]) == (fps, frames)
    video = cv2.VideoCapture(str(root / f"{sequence}.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == frames and video.get(cv2.CAP_PROP_FPS) == fps
    ok, first = video.read()
    video.release()
    assert ok and first.shape == (80, 96, 3)
    # The same objects, under the same names, in every frame; the first one moves over the ground, the others
    # stand still; the camera moves a little every frame.
    names = [[obj["name"] for obj in label["objects"]] for label in labels]
    assert names == [names[0]] * frames and 1 <= len(names[0]) <= 2
    poses = np.array([[_object_to_world(label, obj) for obj in label["objects"]] for label in labels])
    mover_steps = np.linalg.norm(np.diff(poses[:, 0, :3, 3], axis=0), axis=1)
    assert (mover_steps > 1e-4).all() and np.ptp(poses[:, 0, 1, 3]) < 1e-9  # drives at a constant height
    np.testing.assert_allclose(poses[:, 1:], np.broadcast_to(poses[:1, 1:], poses[:, 1:].shape), atol=1e-9)
    still_objects += poses.shape[1] - 1
    centres = np.array([np.linalg.inv(label["camera_data"]["camera_view_matrix"])[:3, 3] for label in labels])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert (steps > 0).all() and steps.max() < 3 * steps.min() + 1e-3  # smooth: no jumps between frames
    for label in labels:
      for obj in label["objects"]:  # every box centre inside every frame
        assert 0 <= obj["projected_cuboid"][0][0] < 96 and 0 <= obj["projected_cuboid"][0][1] < 80
  assert still_objects > 0
  # The frame folders are datasets as they are; other sequence settings are refused.
  assert len(discovery.discover(root / "0000").pairs) == frames
  assert make_synthetic_dataset.main(argv[:-1] + ["--skip-existing"]) == 2
  assert "moving_object True, now False" in capsys.readouterr().err
