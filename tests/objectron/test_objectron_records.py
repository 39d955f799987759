"""records_shuffled conversion, TFRecord framing and NVlabs' manual labels (cups, mugs, chairs, bad boxes)."""

import importlib.util
import json
import pathlib
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from centerpose_jax import errors
from centerpose_jax import geometry
from centerpose_jax.objectron import convert
from centerpose_jax.objectron import extras
from centerpose_jax.objectron import frames
from centerpose_jax.objectron import tfrecord
from centerpose_jax.objectron.proto import example_pb2
from centerpose_jax.testing import objectron_release as fixture

REPO = pathlib.Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "centerpose_jax" / "objectron" / "proto"
SMALL = 10


@pytest.fixture(scope="module")
def scene(real_fixtures):
  return fixture.bottle_scene(real_fixtures, num_frames=31, downscale=SMALL)


def _labels(folder):
  return {path.stem: json.loads(path.read_text()) for path in sorted(pathlib.Path(folder).glob("*.json"))}


def test_tensorflow_written_tfrecord_reads_and_rewrites_byte_for_byte(tmp_path):
  # grain ships this file, written by TensorFlow's TFRecordWriter: 5 records "1", "1 1", "2 1", ...
  grain_folder = pathlib.Path(importlib.util.find_spec("grain").origin).parent
  original = grain_folder / "_src" / "python" / "testdata" / "morris_sequence_first_5.tfrecord"
  found = list(tfrecord.read_records(original))
  assert found == [b"1", b"1 1", b"2 1", b"1 2 1 1", b"1 1 1 2 2 1"]
  assert tfrecord.write_records(tmp_path / "copy", found) == 5
  assert (tmp_path / "copy").read_bytes() == original.read_bytes()


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-3], "record 2 at byte 43: file ends inside the record's 3 data bytes"),
    (lambda data: data[:44] + b"X" + data[45:], "record 2 at byte 43: length checksum mismatch"),
    (lambda data: data[:56] + b"X" + data[57:], "record 2 at byte 43: data checksum mismatch"),
])
def test_damaged_tfrecord_is_refused_at_the_damaged_record(tmp_path, damage, message):
  path = tmp_path / "file"
  tfrecord.write_records(path, [b"first", b"second", b"abc"])
  path.write_bytes(damage(path.read_bytes()))
  reader = tfrecord.read_records(path)
  assert [next(reader), next(reader)] == [b"first", b"second"]
  with pytest.raises(tfrecord.CorruptRecordError, match=message):
    next(reader)


def test_records_give_the_same_labels_as_the_video(scene, tmp_path):
  src, out = tmp_path / "src", tmp_path / "out"
  fixture.write_release(src, scene)
  convert.convert(src, "bottle", "train", out / "video", progress=False)
  path = fixture.record_file_path(src)
  fixture.write_record_file(path, scene, [30, 0, 15])
  broken = fixture.record_file_path(src, shard=1, shards=3)
  fixture.write_record_file(broken, scene, [0])
  broken.write_bytes(broken.read_bytes()[:-1])
  odd = fixture.record_file_path(src, shard=2, shards=3)
  undecodable = example_pb2.Example.FromString(fixture.example_bytes(scene, 15))
  undecodable.features.feature["image/encoded"].bytes_list.value[0] = b"not an image"
  no_plane = example_pb2.Example.FromString(fixture.example_bytes(scene, 30))
  del no_plane.features.feature["plane/center"]
  tfrecord.write_records(odd, [undecodable.SerializeToString(), b"not an example", no_plane.SerializeToString()])

  summary = convert.convert(src, "bottle", "train", out / "records", source="records", progress=False)

  assert summary["units"] == {"listed": 3, "already_converted": 0, "converted": 2, "failed": 1}
  assert "file ends inside the record's" in summary["failures"][broken.name]
  assert summary["frames"] == 4 and summary["frames_without_plane"] == 1
  assert "AR_data" not in _labels(out / "records" / "train" / odd.name)["000002_bottle_batch-3_14_00030"]
  assert summary["skipped_frames"] == {
      "undecodable image/encoded": 1,
      "unusable record: not a tf.train.Example": 1}
  from_video = _labels(out / "video" / "train" / frames.sequence_key(fixture.SEQUENCE_ID))
  from_records = _labels(out / "records" / "train" / path.name)
  assert sorted(from_records) == ["000000_bottle_batch-3_14_00030", "000001_bottle_batch-3_14_00000",
                                  "000002_bottle_batch-3_14_00015"]
  for name, label in from_records.items():
    expected = from_video[name[-5:]]
    assert label["camera_data"]["intrinsics"] == pytest.approx(expected["camera_data"]["intrinsics"], abs=1e-6)
    for field in ("projected_cuboid", "keypoints_3d", "location", "scale"):
      np.testing.assert_allclose(label["objects"][0][field], expected["objects"][0][field], atol=1e-5)
    rotation = geometry.quaternion_to_matrix(label["objects"][0]["quaternion_xyzw"])
    np.testing.assert_allclose(rotation, geometry.quaternion_to_matrix(expected["objects"][0]["quaternion_xyzw"]),
                               atol=1e-5)  # the pose fitted to point_3d is the composed one
    image = cv2.imread(str(out / "records" / "train" / path.name / f"{name}.jpg"))
    assert image.shape == (80, 60, 3) and fixture.frame_index_of(image) == int(name[-5:])


def _label_folder(root, category, lists):
  for name, lines in lists.items():
    (root / category).mkdir(parents=True, exist_ok=True)
    (root / category / name).write_text("".join(f"{key}\t{index}\n" for key, index in lines))
  return extras.CategoryLabels.load(root, category)


def test_cup_labels_make_mugs_with_the_handle_on_plus_x(scene, tmp_path):
  names = ["cup/batch-1/1", "cup/batch-1/2", "cup/batch-1/3"]
  fixture.write_release(tmp_path / "src", scene, names, category="cup")
  labels = _label_folder(tmp_path / "labels", "cup", {
      "cup_list.txt": [("cup_batch-1_1", 0)], "mug_left_list.txt": [("cup_batch-1_2", 0)],
      "mug_right_list.txt": [("cup_batch-1_3", 0)], "bug_list.txt": [("cup_batch-9_9", 0)]})

  summary = convert.convert(tmp_path / "src", "cup", "train", tmp_path / "out",
                            options=convert.Options(labels=labels), progress=False)

  assert summary["units"]["converted"] == 3 and summary["settings"]["labels"] == str(tmp_path / "labels" / "cup")
  cup, left, right = (_labels(tmp_path / "out" / "train" / frames.sequence_key(name)) for name in names)
  assert [label["objects"][0]["mug"] for label in (cup["00000"], left["00000"], right["00000"])] == [False, True, True]
  assert "mug_handle_visible" not in cup["00000"]["objects"][0]
  seen = set()
  for index in (0, 15, 30):
    plain, turned = right[f"{index:05d}"]["objects"][0], left[f"{index:05d}"]["objects"][0]
    # The left-handed mug's box is turned half about y: corners renumbered, the pose still fits them.
    np.testing.assert_allclose(np.asarray(turned["keypoints_3d"]), np.asarray(plain["keypoints_3d"])[
        [0, 6, 5, 8, 7, 2, 1, 4, 3]], atol=1e-6)
    pose = geometry.transform_from_pose(turned["location"], turned["quaternion_xyzw"])
    np.testing.assert_allclose(geometry.apply_transform(pose, geometry.cuboid_vertices(turned["scale"])),
                               turned["keypoints_3d"], atol=1e-5)
    for obj in (plain, turned):
      # The handle (centre of the +x face) faces the camera when the face's outward normal points at it.
      pose = geometry.transform_from_pose(obj["location"], obj["quaternion_xyzw"])
      face_centre = geometry.apply_transform(pose, [[obj["scale"][0] / 2, 0.0, 0.0]])[0]
      facing = float(np.dot(pose[:3, 0], -face_centre)) > 0
      inside = all(0 <= value <= size for value, size in zip(
          geometry.project_with_projection_matrix([face_centre], scene.projection, 60, 80)[0], (60, 80)))
      assert obj["mug_handle_visible"] == (facing and inside)
      seen.add(obj["mug_handle_visible"])
  assert seen == {True, False}  # the sequence shows both sides


def test_chair_symmetry_and_bug_list(scene, tmp_path):
  names = ["chair/batch-1/1", "chair/batch-1/2", "chair/batch-1/3"]
  fixture.write_release(tmp_path / "src", scene, names, category="chair")
  labels = _label_folder(tmp_path / "labels", "chair", {
      "symmetric_list.txt": [("chair_batch-1_1", 0)], "bug_list.txt": [("chair_batch-1_3", 0)]})

  summary = convert.convert(tmp_path / "src", "chair", "train", tmp_path / "out",
                            options=convert.Options(labels=labels), progress=False)

  symmetric, plain, bug = (_labels(tmp_path / "out" / "train" / frames.sequence_key(name)) for name in names)
  assert symmetric["00000"]["objects"][0]["symmetric"] == "True"  # TAO's rule compares with the string
  assert plain["00000"]["objects"][0]["symmetric"] == "False"
  assert all(label["objects"] == [] for label in bug.values())
  assert summary["skipped_objects"] == {"listed in bug_list.txt": 3}


def test_label_folder_problems_are_named(tmp_path):
  with pytest.raises(errors.CenterPoseError, match=r"cup/mug_left_list.txt: missing"):
    _label_folder(tmp_path, "cup", {"cup_list.txt": []})
  with pytest.raises(errors.CenterPoseError, match=r"symmetric_list.txt:2: expected"):
    (tmp_path / "chair").mkdir()
    (tmp_path / "chair" / "symmetric_list.txt").write_text("chair_batch-1_1\t0\nchair_batch-1_2 zero\n")
    extras.CategoryLabels.load(tmp_path, "chair")


def test_checked_in_protobuf_classes_are_what_the_pinned_protoc_generates(tmp_path):
  protos = sorted(PROTO_DIR.glob("*.proto"))
  for proto in protos:
    copy = tmp_path / proto.relative_to(REPO)
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(proto, copy)
  subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "--proto_path=.", "--python_out=.",
                  *(str(path.relative_to(REPO)) for path in protos)], cwd=tmp_path, check=True)
  for proto in protos:
    generated = proto.with_name(proto.stem + "_pb2.py")
    assert (tmp_path / generated.relative_to(REPO)).read_text() == generated.read_text(), generated.name
