"""Issue 15, item 8: property-based fuzzing of the annotation reader and the config loader.

Random and mutated JSON labels and YAML specs must give either a valid result or the project's own error
(`CenterPoseError`) whose lines are `path: field: what is wrong`, never another exception. A label that the
validator accepts must also encode into training targets.
"""

import copy
import json
import re

import hypothesis
from hypothesis import strategies as st
import pytest
import yaml
from configs import default

from centerpose_jax import config as config_lib
from centerpose_jax import errors
from centerpose_jax.convert import tao_spec
from centerpose_jax.data import annotations
from centerpose_jax.data import augment
from centerpose_jax.data import discovery
from centerpose_jax.data import synthetic
from centerpose_jax.data import targets

SETTINGS = hypothesis.settings(max_examples=80, deadline=None, derandomize=True,
                               suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
LABEL = "/d/frame.json"
PROBLEM = re.compile(r"^/d/frame\.json: [\w\[\].]+: \S.*$")  # path: field: what is wrong
# One problem of a spec / config error: "  - field: what", odd keys of the field JSON-quoted.
SPEC_PROBLEM = re.compile(r'^  - (?:"(?:[^"\\]|\\.)*"|[^ "])+: \S.*$')
JSON_LEAVES = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.text(max_size=8)
               | st.floats(allow_nan=True, allow_infinity=True, width=32))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda children: st.lists(children, max_size=10)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=40)


@pytest.fixture(scope="module")
def valid_label(tmp_path_factory):
  """A complete synthetic label (every field TAO's loader, symmetry copies and evaluator read), 2 objects."""
  folder = tmp_path_factory.mktemp("label")
  synthetic.generate_dataset(folder, "chair", num_train=4, num_val=0, seed=3, width=96, height=128)
  labels = [json.loads(p.read_text()) for p in sorted((folder / "train").glob("*.json"))]
  return max(labels, key=lambda label: len(label["objects"]))


def _mutate(data, value):
  """`value` with one random node replaced, deleted, or given an extra key (drawn from `data`)."""
  value = copy.deepcopy(value)
  node, parent, key = value, None, None
  while isinstance(node, (dict, list)) and node and data.draw(st.booleans(), "descend"):
    parent, key = node, data.draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
    node = node[key]
  action = data.draw(st.sampled_from(["replace", "delete", "add"]), "action")
  if parent is None:
    return data.draw(JSON_VALUES) if action == "replace" else value
  if action == "delete" and isinstance(parent, dict):
    del parent[key]
  elif action == "add" and isinstance(node, dict):
    node[data.draw(st.text(max_size=10))] = data.draw(JSON_VALUES)
  else:
    parent[key] = data.draw(JSON_VALUES)
  return value


def _check_label(tmp_path_factory, label):
  """Validates `label` as the reader reads it (from a JSON file) in every mode."""
  path = tmp_path_factory.getbasetemp() / "frame.json"
  path.write_text(json.dumps(label))
  label = json.loads(path.read_text())
  for symmetry in (False, True):
    for evaluation in (False, True):
      problems = annotations.validate_annotation(path, needs_symmetry=symmetry, needs_evaluation=evaluation)
      assert all(problem.startswith(f"{path}: ") and PROBLEM.match(LABEL + problem[len(str(path)):])
                 for problem in problems), problems
      if not problems:  # what the validator accepts, training can encode
        crop = augment.letterbox_crop(96, 128, input_size=(64, 64))
        targets.encode_targets(label, 96, 128, crop, num_symmetry=4 if symmetry else 1, max_objs=10,
                               output_size=(16, 16))
        annotations.missing_optional_fields(label)
        annotations.camera_matrix_from_annotation(label)


@SETTINGS
@hypothesis.given(st.data())
def test_mutated_labels_give_problems_or_encode(tmp_path_factory, valid_label, data):
  _check_label(tmp_path_factory, _mutate(data, valid_label))


@SETTINGS
@hypothesis.given(JSON_VALUES)
def test_random_json_gives_problems(tmp_path_factory, value):
  _check_label(tmp_path_factory, value)


@SETTINGS
@hypothesis.given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_label_files_give_problems(tmp_path_factory, content):
  path = tmp_path_factory.getbasetemp() / "fuzz.json"
  path.write_bytes(content)
  problems = annotations.validate_annotation(path, needs_symmetry=True, needs_evaluation=True)
  assert all(problem.startswith(f"{path}: ") and PROBLEM.match(LABEL + problem[len(str(path)):])
             for problem in problems), problems


def test_deeply_nested_label_file_is_a_problem(tmp_path):
  path = tmp_path / "deep.json"
  path.write_text("[" * 100_000)
  expected = [f"{path}: file: cannot read JSON (nested too deeply)"]
  assert annotations.validate_annotation(path, needs_symmetry=False, needs_evaluation=False) == expected
  (tmp_path / "deep.png").write_bytes(b"")
  report = annotations.validate_source(discovery.FolderSamples(tmp_path), needs_symmetry=False,
                                       needs_evaluation=False)
  assert report.problems == expected


def _spec():
  """The default config as a TAO spec (a plain mapping of sections)."""
  return json.loads(json.dumps(default.get_config().to_dict()))


def _check_spec(tmp_path_factory, text):
  path = tmp_path_factory.getbasetemp() / "fuzz_spec.yaml"
  path.write_text(text)
  try:
    config = tao_spec.load_tao_spec(str(path))
  except errors.CenterPoseError as error:
    first, *lines = str(error).splitlines()
    assert first.startswith(f"{path}: "), str(error)
    assert all(SPEC_PROBLEM.match(line) for line in lines), str(error)
    return
  for task in config_lib.TASKS:
    try:
      config_lib.validate(config, task)
    except config_lib.ConfigError as error:
      assert all(SPEC_PROBLEM.match(line) for line in str(error).splitlines()[1:]), str(error)


@SETTINGS
@hypothesis.given(st.data())
def test_mutated_specs_load_or_report_each_field(tmp_path_factory, data):
  _check_spec(tmp_path_factory, yaml.safe_dump(_mutate(data, _spec())))


@SETTINGS
@hypothesis.given(st.text(max_size=300))
def test_random_yaml_text_loads_or_is_reported(tmp_path_factory, text):
  _check_spec(tmp_path_factory, text)
