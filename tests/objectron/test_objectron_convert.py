"""tools/convert_objectron.py and centerpose_jax.objectron on an Objectron-layout release built from the real
bottle annotations (centerpose_jax/testing/objectron_release.py): geometry of every written label, image size and frame choice,
failures, resumption, records_shuffled, NVlabs' manual labels."""

import json
import pathlib

import cv2
import numpy as np
import pytest

from centerpose_jax import errors
from centerpose_jax import geometry
from centerpose_jax.data import annotations
from centerpose_jax.objectron import convert
from centerpose_jax.objectron import frames
from centerpose_jax.objectron import sequence as sequence_lib
from tools import convert_objectron
from tools import validate_dataset
from centerpose_jax.testing import objectron_release as fixture

SMALL = 10  # the fast tests use 144x192 videos (the conversion does not depend on the resolution)
KEY = frames.sequence_key(fixture.SEQUENCE_ID)


def _labels(folder):
  """{frame index: (label, image path)} of a converted sequence folder."""
  found = {}
  for path in sorted(pathlib.Path(folder).glob("*.json")):
    image = next(path.parent.glob(path.stem + ".*g"))
    found[int(path.stem.split("_")[-1])] = (json.loads(path.read_text()), image)
  return found


def _check_label(label, scene, index, size, points=None):
  """Asserts the label of frame `index` matches the scene's annotation (`points`: other [9, 3] / [9, 2])."""
  width, height = size
  points_3d, points_2d = points or scene.keypoints(index)
  obj = label["objects"][0]
  assert (label["camera_data"]["width"], label["camera_data"]["height"]) == size
  np.testing.assert_allclose(obj["projected_cuboid"], points_2d * (width, height), atol=1e-3)
  np.testing.assert_allclose(obj["keypoints_3d"], points_3d, atol=1e-5)
  pose = geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
  np.testing.assert_allclose(geometry.apply_transform(pose, geometry.cuboid_vertices(obj["scale"])),
                             obj["keypoints_3d"], atol=1e-5)
  camera_k = annotations.camera_matrix_from_annotation(label)
  projected = geometry.project_with_intrinsics(geometry.opengl_to_opencv(obj["keypoints_3d"]), camera_k)
  np.testing.assert_allclose(projected, obj["projected_cuboid"], atol=2e-3)
  np.testing.assert_allclose(obj["scale"], scene.scale, atol=1e-6)
  assert obj["visibility"] == pytest.approx(scene.visibility(index), abs=1e-6)
  assert (obj["class"], obj["name"], obj["provenance"]) == ("bottle", "bottle_0", "objectron")
  centre, normal = scene.plane(index)
  np.testing.assert_allclose(label["AR_data"]["plane_center"], centre, atol=1e-5)
  np.testing.assert_allclose(label["AR_data"]["plane_normal"], normal, atol=1e-5)


def test_full_resolution_video_gives_600x800_frames_with_exact_labels(real_fixtures, tmp_path):
  scene = fixture.bottle_scene(real_fixtures, num_frames=31)
  fixture.write_release(tmp_path / "src", scene)
  assert (scene.width, scene.height) == (1440, 1920)

  code = convert_objectron.main(["--src", str(tmp_path / "src"), "--category", "bottle", "--out",
                                 str(tmp_path / "out"), "--workers", "1", "--no-progress"])

  assert code == 0
  written = _labels(tmp_path / "out" / "train" / KEY)
  assert sorted(written) == [0, 15, 30]  # every 15th frame
  sensor = scene.sensor_intrinsics()
  for index, (label, image_path) in written.items():
    image = cv2.imread(str(image_path))
    assert image.shape == (800, 600, 3)
    assert fixture.frame_index_of(image) == index  # the image is the video's frame `index`
    _check_label(label, scene, index, (600, 800))
    # The intrinsics are the landscape sensor's K turned into the portrait image (fx <-> fy, cx = width - cy)
    # at the pixel-centre convention, scaled by 600/1440: NVlabs' plain swap (cx = cy_sensor / 2.4) is not.
    expected = {"fx": sensor[1, 1], "fy": sensor[0, 0], "cx": 1440 - sensor[1, 2] - 0.5, "cy": sensor[0, 2] + 0.5}
    for name, value in expected.items():
      assert label["camera_data"]["intrinsics"][name] == pytest.approx(value / 2.4, abs=1e-3)
    np.testing.assert_allclose(label["camera_data"]["camera_view_matrix"], scene.views[index], atol=1e-6)
    np.testing.assert_allclose(label["camera_data"]["camera_projection_matrix"], scene.projection, atol=1e-6)
    camera_to_world = np.linalg.inv(scene.views[index])
    np.testing.assert_allclose(label["camera_data"]["location_world"], camera_to_world[:3, 3], atol=1e-5)
  assert validate_dataset.main([str(tmp_path / "out" / "train"), "--category", "bottle", "--evaluation"]) == 0
  summary = json.loads((tmp_path / "out" / "conversion_train.json").read_text())
  assert summary["units"] == {"listed": 1, "already_converted": 0, "converted": 1, "failed": 0}
  assert (summary["frames"], summary["objects"]) == (3, 3)


def test_nvlabs_chair_label_intrinsics_are_off_ours_from_its_projection_fit(real_fixtures):
  """On a real label that NVlabs' script wrote: intrinsics derived from its projection matrix reproduce its
  projected_cuboid (up to NVlabs' truncation to integers and Objectron's own rounding of point_2d) and equal the
  sensor K it started from, properly turned; its own swapped intrinsics are 2 px off along x."""
  label = json.loads((real_fixtures / "objectron_chair_label.json").read_text())
  camera, obj = label["camera_data"], label["objects"][0]
  ours = geometry.intrinsics_from_projection_matrix(camera["camera_projection_matrix"], 600, 800)
  nvlabs = camera["intrinsics"]
  points = geometry.opengl_to_opencv(obj["keypoints_3d"])
  ours_error = geometry.project_with_intrinsics(points, geometry.camera_matrix(*ours)) - obj["projected_cuboid"]
  nvlabs_error = (geometry.project_with_intrinsics(points, geometry.camera_matrix(
      nvlabs["fx"], nvlabs["fy"], nvlabs["cx"], nvlabs["cy"])) - obj["projected_cuboid"])
  assert np.abs(ours_error).max() < 2.0  # NVlabs truncates projected_cuboid to integers
  assert np.mean(ours_error[:, 0]) == pytest.approx(0.5, abs=0.5)  # truncation: between 0 and 1 on average
  assert np.mean(nvlabs_error[:, 0]) > 1.5  # its cx is 1.9 px too large
  # NVlabs wrote cx = K_sensor[1, 2] / 2.4 and cy = K_sensor[0, 2] / 2.4: turned properly, those are
  # (1440 - K[1, 2] - 0.5) / 2.4 and (K[0, 2] + 0.5) / 2.4, which is what the projection matrix says.
  assert ours[2] == pytest.approx((1440 - nvlabs["cx"] * 2.4 - 0.5) / 2.4, abs=1e-3)
  assert ours[3] == pytest.approx((nvlabs["cy"] * 2.4 + 0.5) / 2.4, abs=1e-3)
  assert ours[0] == pytest.approx(nvlabs["fx"], rel=1e-6) and ours[1] == pytest.approx(nvlabs["fy"], rel=1e-6)


@pytest.fixture(scope="module")
def small_scene(real_fixtures):
  return fixture.bottle_scene(real_fixtures, num_frames=31, downscale=SMALL)


def test_landscape_video_is_turned_and_png_written(small_scene, tmp_path):
  fixture.write_release(tmp_path / "src", small_scene, landscape_video=True)
  options = convert.Options(frame_stride=10, resize=convert.Resize.parse("72x96"), image_format="png")

  summary = convert.convert(tmp_path / "src", "bottle", "train", tmp_path / "out", options=options, progress=False)

  assert summary["units"]["converted"] == 1 and summary["frames"] == 4
  for index, (label, image_path) in _labels(tmp_path / "out" / "train" / KEY).items():
    assert image_path.suffix == ".png"
    image = cv2.imread(str(image_path))
    assert image.shape == (96, 72, 3) and fixture.frame_index_of(image) == index
    _check_label(label, small_scene, index, (72, 96))


def test_failed_sequences_are_reported_and_a_rerun_skips_finished_ones(real_fixtures, small_scene, tmp_path):
  src, out = tmp_path / "src", tmp_path / "out"
  names = [f"bottle/batch-1/{number}" for number in range(5)]
  fixture.write_release(src, small_scene, names)
  (src / "videos" / names[1] / "video.MOV").unlink()
  (src / "annotations" / f"{names[2]}.pbdata").write_bytes(b"\x0a\xff\xff garbage")
  fixture.write_video(src / "videos" / names[3] / "video.MOV", small_scene, num_frames=20)
  other = fixture.bottle_scene(real_fixtures, num_frames=31, downscale=SMALL * 2)
  fixture.write_video(src / "videos" / names[4] / "video.MOV", other)
  (out / convert.STAGING / "train" / "bottle_batch-1_0").mkdir(parents=True)  # a crashed run's leftover

  code = convert_objectron.main(["--src", str(src), "--category", "bottle", "--out", str(out), "--workers", "2",
                                 "--no-progress"])

  assert code == 1
  summary = json.loads((out / "conversion_train.json").read_text())
  assert summary["units"] == {"listed": 5, "already_converted": 0, "converted": 1, "failed": 4}
  failures = summary["failures"]
  assert "missing video" in failures["bottle_batch-1_1"]
  assert "cannot read the annotation Sequence" in failures["bottle_batch-1_2"]
  assert "frame count mismatch: the video ends after 20 frames, the annotation has 31" in failures["bottle_batch-1_3"]
  assert "frames are 72x96, the annotation's camera image is 144x192" in failures["bottle_batch-1_4"]
  assert sorted(path.name for path in (out / "train").iterdir()) == ["bottle_batch-1_0"]
  assert not any((out / convert.STAGING / "train").iterdir())

  fixture.write_video(src / "videos" / names[1] / "video.MOV", small_scene)
  before = (out / "train" / "bottle_batch-1_0" / "00000.json").stat().st_mtime_ns
  summary = convert.convert(src, "bottle", "train", out, max_sequences=2, progress=False)

  assert summary["units"] == {"listed": 2, "already_converted": 1, "converted": 1, "failed": 0}
  assert (out / "train" / "bottle_batch-1_0" / "00000.json").stat().st_mtime_ns == before
  assert len(_labels(out / "train" / "bottle_batch-1_1")) == 3
  with pytest.raises(errors.CenterPoseError, match=r"converted with other settings \(frame_stride 15, now 5\)"):
    convert.convert(src, "bottle", "train", out, options=convert.Options(frame_stride=5), progress=False)


def test_frame_boxes_are_matched_by_object_id_and_bad_boxes_left_out(small_scene):
  sequence = fixture.build_sequence(small_scene)
  bottle = type(sequence.objects[0])()
  bottle.CopyFrom(sequence.objects[0])
  del sequence.objects[:]
  flat = sequence.objects.add(id=3, category="bottle")  # position 0; the bottle (id 7) is now at position 1
  flat.rotation.extend(np.eye(3).reshape(-1))
  flat.translation.extend([0.0, 0.0, 0.0])
  flat.scale.extend([0.1, 0.0, 0.1])
  sequence.objects.append(bottle)
  frame = sequence.frame_annotations[0]
  good = type(frame.annotations[0])()
  good.CopyFrom(frame.annotations[0])
  del frame.annotations[:]
  frame.annotations.add(object_id=99, keypoints=good.keypoints)
  frame.annotations.add(object_id=3, keypoints=good.keypoints)
  frame.annotations.append(good)
  sequence.frame_annotations[1].annotations[0].keypoints[4].point_3d.x += 0.005

  first = sequence_lib.annotated_frame(sequence, 0, fixture.SEQUENCE_ID, "bottle")
  second = sequence_lib.annotated_frame(sequence, 1, fixture.SEQUENCE_ID, "bottle")

  assert [obj.index for obj in first.objects] == [1]
  assert first.skipped == ["annotation of an unknown object id", "zero or missing size"]
  np.testing.assert_allclose(first.objects[0].keypoints_3d, small_scene.keypoints(0)[0], atol=1e-6)
  assert frames.object_label(first.objects[0], 60, 80)["name"] == "bottle_1"
  assert second.objects == [] and second.skipped == ["pose and point_3d differ by more than 1 mm"]
  del sequence.frame_annotations[2].camera.view_matrix[:]
  with pytest.raises(sequence_lib.SequenceError, match=r"frame_annotations\[2\].camera.view_matrix: 0 values"):
    sequence_lib.annotated_frame(sequence, 2, fixture.SEQUENCE_ID, "bottle")


@pytest.mark.parametrize("text, size", [("1/2.4", (600, 800)), ("0.5", (720, 960)), ("600x800", (600, 800)),
                                        ("1", (1440, 1920)), ("512x512", (512, 512))])
def test_resize_option(text, size):
  assert convert.Resize.parse(text).output_size(1440, 1920) == size


@pytest.mark.parametrize("text", ["0", "-1", "1/0", "x", "600x0", "abc"])
def test_bad_resize_option_is_refused(text):
  with pytest.raises(errors.CenterPoseError, match="--resize"):
    convert.Resize.parse(text)


def test_missing_index_is_a_clear_error(tmp_path, capsys):
  code = convert_objectron.main(["--src", str(tmp_path), "--category", "bike", "--out", str(tmp_path / "out")])
  assert code == 2
  assert "no index of bike train: expected" in capsys.readouterr().err
