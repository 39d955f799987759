"""Label validation: every kind of bad file is reported as `path: field: what is wrong`, all at once."""

import copy
import json
import shutil

import numpy as np
import pytest

from centerpose_jax.data import annotations
from centerpose_jax.data import discovery
from centerpose_jax.data import loader
from configs import default
from tools import validate_dataset

GOOD_SAMPLE = "t05_synth_three_objects"  # three objects with every field the evaluator reads


@pytest.fixture(scope="module")
def good_label(tao_reference):
  return json.loads((tao_reference / "targets" / GOOD_SAMPLE / "frame.json").read_text())


def _problems(label, path="/d/a.json", needs_symmetry=False, needs_evaluation=False):
  return annotations.validate_annotation(label, needs_symmetry=needs_symmetry, needs_evaluation=needs_evaluation,
                                         path=path)


def test_complete_label_has_no_problem(good_label):
  assert _problems(good_label, needs_symmetry=True, needs_evaluation=True) == []


def test_wrong_shape_message_format(good_label):
  label = copy.deepcopy(good_label)
  label["objects"][2]["projected_cuboid"] = label["objects"][2]["projected_cuboid"][:8]
  assert _problems(label) == ["/d/a.json: objects[2].projected_cuboid: expected shape 9x2, got 8x2"]


@pytest.mark.parametrize("edit, expected", [
    (lambda l: l["objects"][0].pop("projected_cuboid"), "objects[0].projected_cuboid: missing"),
    (lambda l: l["objects"][1].update(scale=[0.1, 0.2]), "objects[1].scale: expected shape 3, got 2"),
    (lambda l: l["objects"][1].update(scale=[0.1, 0.0, 0.2]), "objects[1].scale: scale[1] (height) is 0"),
    (lambda l: l["objects"][0].update(scale=[0.1, float("nan"), 0.2]), "objects[0].scale: contains NaN"),
    (lambda l: l["objects"][0]["projected_cuboid"][3].__setitem__(0, "12"), "objects[0].projected_cuboid: "
     "expected numbers"),
    (lambda l: l["objects"][0]["projected_cuboid"][3].append(1.0), "objects[0].projected_cuboid: expected shape "
     "9x2, got a ragged list"),
    (lambda l: l["camera_data"]["intrinsics"].pop("fy"), "camera_data.intrinsics.fy: missing"),
    (lambda l: l["camera_data"]["intrinsics"].update(fx=-10.0), "camera_data.intrinsics.fx: expected a positive"),
    (lambda l: l["camera_data"]["intrinsics"].update(cx=float("inf")), "camera_data.intrinsics.cx: contains NaN"),
    (lambda l: l.pop("camera_data"), "camera_data: missing"),
    (lambda l: l.update(objects={"a": 1}), "objects: expected a list, got dict"),
    (lambda l: l["objects"].append(7), "objects[3]: expected an object, got int"),
])
def test_each_kind_of_bad_file_is_reported(tmp_path, good_label, edit, expected):
  label = copy.deepcopy(good_label)
  edit(label)
  path = tmp_path / "bad.json"
  path.write_text(json.dumps(label))  # Python's json writes NaN / Infinity literals, which json.load reads
  problems = annotations.validate_annotation(path, needs_symmetry=False, needs_evaluation=False)
  assert len(problems) == 1 and problems[0].startswith(f"{path}: {expected}"), problems


def test_unreadable_files(tmp_path):
  broken = tmp_path / "broken.json"
  broken.write_text('{"objects": [')
  (problem,) = annotations.validate_annotation(broken, needs_symmetry=False, needs_evaluation=False)
  assert problem.startswith(f"{broken}: file: cannot read JSON")
  listed = tmp_path / "list.json"
  listed.write_text("[1, 2]")
  assert annotations.validate_annotation(listed, needs_symmetry=False, needs_evaluation=False) == [
      f"{listed}: file: expected a JSON object at the top level, got list"]
  with pytest.raises(annotations.DatasetError, match="cannot read JSON"):
    annotations.load_annotation(broken)


def test_symmetry_and_evaluation_fields_are_required_only_when_used(good_label):
  label = copy.deepcopy(good_label)
  del label["camera_data"]["camera_projection_matrix"]
  del label["objects"][0]["keypoints_3d"]
  label["objects"][1]["quaternion_xyzw"] = [0, 0, 0, 0]
  del label["objects"][2]["visibility"]
  del label["AR_data"]
  assert _problems(label) == []  # training without symmetry copies needs none of them
  assert _problems(label, needs_symmetry=True) == [
      "/d/a.json: camera_data.camera_projection_matrix: missing",
      "/d/a.json: objects[0].keypoints_3d: missing",
      "/d/a.json: objects[1].quaternion_xyzw: is all zeros, not a rotation"]
  label["objects"][0]["symmetric"] = "False"  # TAO gives this object a single copy: no 3D fields needed
  assert "/d/a.json: objects[0].keypoints_3d: missing" not in _problems(label, needs_symmetry=True)
  evaluation = _problems(label, needs_evaluation=True)
  assert "/d/a.json: objects[0].keypoints_3d: missing" in evaluation
  # Custom / Isaac Sim labels: no AR_data, visibility or image size is still evaluated (scale from the box).
  assert not [p for p in evaluation if "visibility" in p or "AR_data" in p]
  del label["camera_data"]["width"]
  assert _problems(label, needs_evaluation=True) == evaluation
  label["AR_data"] = {"plane_center": [0, 0], "plane_normal": [0, 1, 0]}  # present: checked
  label["objects"][2]["visibility"] = "high"
  assert _problems(label, needs_evaluation=True) == evaluation + [
      "/d/a.json: objects[2].visibility: expected a number, got str",
      "/d/a.json: AR_data.plane_center: expected shape 3, got 2"]
  assert _problems(label) == []  # training reads none of them


def test_all_problems_of_a_file_are_returned(good_label):
  label = copy.deepcopy(good_label)
  label["camera_data"]["intrinsics"]["fx"] = 0
  label["objects"][0]["scale"] = "big"
  label["objects"][2]["projected_cuboid"] = [[0, 0]] * 9 + [[1, 1]]
  problems = _problems(label)
  assert problems == [
      "/d/a.json: camera_data.intrinsics.fx: expected a positive number (pixels), got 0",
      "/d/a.json: objects[0].scale: expected a list of numbers, got str",
      "/d/a.json: objects[2].projected_cuboid: expected shape 9x2, got 10x2"]


def test_camera_matrix_from_intrinsics(good_label):
  intrinsics = good_label["camera_data"]["intrinsics"]
  camera_k = annotations.camera_matrix_from_annotation(good_label)
  np.testing.assert_array_equal(camera_k, [[intrinsics["fx"], 0, intrinsics["cx"]],
                                           [0, intrinsics["fy"], intrinsics["cy"]], [0, 0, 1]])
  assert annotations.camera_matrix_from_annotation({"objects": []}) is None


@pytest.fixture()
def dataset_with_bad_files(tmp_path, tao_reference, good_label):
  """seq_a: 2 good frames and one image without JSON; seq_b: a frame with 2 problems and a broken JSON."""
  source = tao_reference / "targets" / GOOD_SAMPLE
  for folder in ("seq_a", "seq_b"):
    (tmp_path / folder).mkdir()
  for name in ("seq_a/000", "seq_a/001", "seq_b/000", "seq_b/001"):
    shutil.copy(source / "frame.png", tmp_path / f"{name}.png")
    shutil.copy(source / "frame.json", tmp_path / f"{name}.json")
  shutil.copy(source / "frame.png", tmp_path / "seq_a" / "002.PNG")
  bad = copy.deepcopy(good_label)
  bad["objects"][1]["scale"][1] = 0
  bad["objects"][2]["projected_cuboid"].pop()
  (tmp_path / "seq_b" / "000.json").write_text(json.dumps(bad))
  (tmp_path / "seq_b" / "001.json").write_text("not json")
  return tmp_path


def test_validate_dataset_tool_reports_everything(dataset_with_bad_files, capsys):
  root = dataset_with_bad_files
  assert validate_dataset.main([str(root)]) == 1
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == f"{root}/seq_b/000.json: objects[1].scale: scale[1] (height) is 0; the scale target divides by it"
  assert lines[1] == f"{root}/seq_b/000.json: objects[2].projected_cuboid: expected shape 9x2, got 8x2"
  assert lines[2].startswith(f"{root}/seq_b/001.json: file: cannot read JSON")
  summary = json.loads("\n".join(lines[3:]))
  assert summary["images"] == 4 and summary["images_without_json"] == 1
  assert summary["objects"] == 9 and summary["objects_per_image"] == {"min": 3, "mean": 3.0, "max": 3}
  assert summary["invalid_images"] == 2 and summary["problems"] == 3

  shutil.rmtree(root / "seq_b")
  assert validate_dataset.main([str(root), "--category", "chair"]) == 0
  assert validate_dataset.main([str(root), "--evaluation"]) == 0
  assert validate_dataset.main([str(root / "missing")]) == 1
  assert "not a folder" in capsys.readouterr().err


def test_training_check_stops_or_skips(dataset_with_bad_files, caplog):
  source = discovery.FolderSamples(dataset_with_bad_files)
  dataset = default.get_config().dataset
  with pytest.raises(annotations.DatasetError) as raised:
    loader.check_dataset(source, dataset)
  assert len(raised.value.problems) == 3
  assert "seq_b/000.json: objects[1].scale" in str(raised.value) and "seq_b/001.json: file" in str(raised.value)
  dataset.skip_invalid = True
  checked = loader.check_dataset(source, dataset)
  kept = checked.source
  assert [kept[i].path for i in range(len(kept))] == [source[0].path, source[1].path]
  assert checked.skipped == 2
  warnings = [r for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "skipping 2 invalid samples of 4" in warnings[0].getMessage()
