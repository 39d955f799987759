"""Reading and checking CenterPose (Objectron-style) JSON labels.

Every problem is reported as `path: field: what is wrong`, e.g.
`/d/a.json: objects[2].projected_cuboid: expected shape 9x2, got 8x2`, and a check returns all problems of a
file, not just the first. What is required (reference-behavior §1.2):
  * always: `camera_data.intrinsics.{fx, fy, cx, cy}` (positive pixels), `objects` (a list), and per object
    `projected_cuboid` (9x2 pixels) and `scale` (3 numbers, scale[1] != 0);
  * when symmetry copies are generated (`needs_symmetry`): `camera_data.camera_projection_matrix` (4x4) and, per
    object whose `symmetric` key is absent or 'True', `keypoints_3d` (9x3), `location` (3), `quaternion_xyzw` (4);
  * for evaluation (`needs_evaluation`): what every metric needs: the projection matrix and per object
    `keypoints_3d`, `location` and `quaternion_xyzw`. Optional, checked when present: `camera_data.width` /
    `height` (default: the image's size), `AR_data.plane_center` / `plane_normal` (3 each; without them the
    evaluator takes the metric scale from the ground-truth box) and per object `visibility` (default 1).
All numbers must be finite. `validate_source` also decodes every image (`images.image_problems`: empty,
undecodable, truncated, too small, or another size than `camera_data` says) and reports a folder's labels
without an image.
"""

import collections
import concurrent.futures
import dataclasses
import functools
import json
import pathlib
from typing import Dict, List, Optional, Union

import numpy as np
import tqdm

from centerpose_jax import errors
from centerpose_jax.data import discovery
from centerpose_jax.data import images

# Fields reported as "missing optional" in dataset summaries: (name, where it lives).
OPTIONAL_OBJECT_FIELDS = ("keypoints_3d", "location", "quaternion_xyzw", "visibility")
SYMMETRY_FIELDS = (("keypoints_3d", (9, 3)), ("location", (3,)), ("quaternion_xyzw", (4,)))
_CHECK_THREADS = 8  # image decoding releases the GIL
_PROGRESS_FROM = 200  # samples: smaller datasets are checked without a progress bar


class DatasetError(errors.CenterPoseError, ValueError):
  """A dataset has invalid samples; the message lists every problem, one per line."""

  def __init__(self, problems, header="invalid dataset"):
    self.problems = list(problems)
    super().__init__(f"{header} ({len(self.problems)} problems):\n" + "\n".join(self.problems))


def load_annotation(path) -> dict:
  """The parsed JSON label at `path`; raises DatasetError (`path: file: ...`) if unreadable or not JSON."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except (OSError, ValueError) as error:
    raise DatasetError([f"{path}: file: cannot read JSON ({error})"]) from error
  except RecursionError as error:
    raise DatasetError([f"{path}: file: cannot read JSON (nested too deeply)"]) from error


def copies_needed(obj, dataset_has_copies: bool) -> bool:
  """Whether object `obj` gets re-projected symmetry copies (from its 3D fields).

  TAO rule: an object's `symmetric` key, when present, sets its copy count to 4 if it is the string 'True' and
  to 1 otherwise (a JSON boolean true is not 'True'); without the key the copy count is the dataset's.
  `dataset_has_copies`: the dataset's symmetry count is above 1.
  """
  if not dataset_has_copies:
    return False
  return obj.get("symmetric", "True") == "True" if isinstance(obj, dict) else True


def _shape_text(shape) -> str:
  return "x".join(str(n) for n in shape) if shape else "a scalar"


def _check_numbers(problems, prefix, field, value, shape) -> Optional[np.ndarray]:
  """Appends what is wrong with `value` as finite numbers of `shape`; returns the float64 array when fine."""
  where = f"{prefix}{field}"
  if value is None:
    problems.append(f"{where}: missing")
    return None
  if isinstance(value, bool) or (isinstance(value, list) and _has_non_number(value)):
    problems.append(f"{where}: expected numbers, got {json.dumps(value)[:60]}")
    return None
  if not isinstance(value, (list, int, float)):
    problems.append(f"{where}: expected {'a number' if not shape else 'a list of numbers'}, "
                    f"got {type(value).__name__}")
    return None
  try:
    array = np.asarray(value, dtype=np.float64)
  except ValueError:
    problems.append(f"{where}: expected shape {_shape_text(shape)}, got a ragged list")
    return None
  if array.shape != tuple(shape):
    problems.append(f"{where}: expected shape {_shape_text(shape)}, got {_shape_text(array.shape)}")
    return None
  if not np.all(np.isfinite(array)):
    problems.append(f"{where}: contains NaN or infinite values")
    return None
  return array


def _has_non_number(values) -> bool:
  for value in values:
    if isinstance(value, list):
      if _has_non_number(value):
        return True
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
      return True
  return False


def _check_camera(problems, prefix, camera, needs_projection, needs_evaluation):
  if not isinstance(camera, dict):
    problems.append(f"{prefix}camera_data: missing" if camera is None
                    else f"{prefix}camera_data: expected an object, got {type(camera).__name__}")
    return
  intrinsics = camera.get("intrinsics")
  if not isinstance(intrinsics, dict):
    problems.append(f"{prefix}camera_data.intrinsics: missing" if intrinsics is None else
                    f"{prefix}camera_data.intrinsics: expected an object, got {type(intrinsics).__name__}")
  else:
    for name in ("fx", "fy", "cx", "cy"):
      value = _check_numbers(problems, prefix, f"camera_data.intrinsics.{name}", intrinsics.get(name), ())
      if value is not None and value <= 0:
        problems.append(f"{prefix}camera_data.intrinsics.{name}: expected a positive number (pixels), got {value:g}")
  if needs_projection:
    _check_numbers(problems, prefix, "camera_data.camera_projection_matrix",
                   camera.get("camera_projection_matrix"), (4, 4))
  for name in ("width", "height"):
    if needs_evaluation and name in camera:
      value = _check_numbers(problems, prefix, f"camera_data.{name}", camera[name], ())
      if value is not None and value <= 0:
        problems.append(f"{prefix}camera_data.{name}: expected a positive number (pixels), got {value:g}")


def _check_object(problems, prefix, obj, needs_symmetry_copies, needs_evaluation):
  if not isinstance(obj, dict):
    problems.append(f"{prefix[:-1]}: expected an object, got {type(obj).__name__}")
    return
  _check_numbers(problems, prefix, "projected_cuboid", obj.get("projected_cuboid"), (9, 2))
  scale = _check_numbers(problems, prefix, "scale", obj.get("scale"), (3,))
  if scale is not None and scale[1] == 0:
    problems.append(f"{prefix}scale: scale[1] (height) is 0; the scale target divides by it")
  if needs_symmetry_copies or needs_evaluation:
    for field, shape in SYMMETRY_FIELDS:
      value = _check_numbers(problems, prefix, field, obj.get(field), shape)
      if field == "quaternion_xyzw" and value is not None and np.linalg.norm(value) == 0:
        problems.append(f"{prefix}quaternion_xyzw: is all zeros, not a rotation")
  if needs_evaluation and "visibility" in obj:
    _check_numbers(problems, prefix, "visibility", obj["visibility"], ())


def validate_annotation(path_or_dict: Union[str, pathlib.Path, dict], *, needs_symmetry: bool,
                        needs_evaluation: bool, path: Optional[str] = None) -> List[str]:
  """Every problem of one label, as `path: field: what is wrong` strings (empty when the label is usable).

  Args:
    path_or_dict: a JSON file path, or an already parsed label.
    needs_symmetry: symmetry copies are generated (dataset num_symmetry > 1), so the projection matrix and each
      copied object's 3D fields are required.
    needs_evaluation: the label feeds the evaluator (projection matrix and 3D fields required).
    path: the name to report for a parsed dict (defaults to "<annotation>").
  """
  if not isinstance(path_or_dict, (str, pathlib.Path)):  # a parsed label (a dict, or any other JSON value)
    annotation, name = path_or_dict, path or "<annotation>"
  else:
    name = str(path_or_dict)
    try:
      annotation = load_annotation(path_or_dict)
    except DatasetError as error:
      return error.problems
  prefix = f"{name}: "
  if not isinstance(annotation, dict):
    return [f"{name}: file: expected a JSON object at the top level, got {type(annotation).__name__}"]
  problems = []
  _check_camera(problems, prefix, annotation.get("camera_data"), needs_symmetry or needs_evaluation,
                needs_evaluation)
  objects = annotation.get("objects")
  if not isinstance(objects, list):
    problems.append(f"{prefix}objects: missing" if objects is None
                    else f"{prefix}objects: expected a list, got {type(objects).__name__}")
    objects = []
  for index, obj in enumerate(objects):
    _check_object(problems, f"{prefix}objects[{index}].", obj, copies_needed(obj, needs_symmetry), needs_evaluation)
  ar_data = annotation.get("AR_data")
  if needs_evaluation and ar_data is not None:
    if not isinstance(ar_data, dict):
      problems.append(f"{prefix}AR_data: expected an object, got {type(ar_data).__name__}")
    else:
      for field in ("plane_center", "plane_normal"):
        _check_numbers(problems, prefix, f"AR_data.{field}", ar_data.get(field), (3,))
  return problems


def missing_optional_fields(annotation: dict) -> List[str]:
  """Names of the optional fields (evaluation / symmetry only) that a valid label lacks, one per occurrence."""
  missing = []
  camera = annotation.get("camera_data") or {}
  if "camera_projection_matrix" not in camera:
    missing.append("camera_data.camera_projection_matrix")
  for field in ("width", "height"):
    if field not in camera:
      missing.append(f"camera_data.{field}")
  if "AR_data" not in annotation:
    missing.append("AR_data")
  for obj in annotation.get("objects") or []:
    if isinstance(obj, dict):
      missing.extend(f"objects[].{field}" for field in OPTIONAL_OBJECT_FIELDS if field not in obj)
  return missing


def camera_matrix_from_annotation(annotation) -> Optional[np.ndarray]:
  """[3, 3] K (pixels, zero skew) from `camera_data.intrinsics` as TAO reads it, or None when absent."""
  intrinsics = ((annotation or {}).get("camera_data") or {}).get("intrinsics")
  if not isinstance(intrinsics, dict) or any(key not in intrinsics for key in ("fx", "fy", "cx", "cy")):
    return None
  camera_k = np.eye(3)
  camera_k[0, 0], camera_k[0, 2] = intrinsics["fx"], intrinsics["cx"]
  camera_k[1, 1], camera_k[1, 2] = intrinsics["fy"], intrinsics["cy"]
  return camera_k


@dataclasses.dataclass
class DatasetReport:
  """Validation of a whole dataset.

  Attributes:
    problems: every problem, `path: field: what is wrong`.
    invalid_indices: sample indices with at least one problem (label or image).
    num_samples: image + JSON pairs checked.
    num_objects: objects over all readable labels.
    objects_per_image: (min, mean, max) objects per readable label.
    images_without_json: images found without a label (folders only).
    missing_optional: count of each missing optional field.
    unreadable_images: samples whose image is empty or cannot be decoded (also in `invalid_indices`).
    jsons_without_image: labels without their image (folders only; each is also a problem).
    links_not_followed: symbolic links that lead outside the dataset root (folders only; not followed).
  """
  problems: List[str]
  invalid_indices: List[int]
  num_samples: int
  num_objects: int
  objects_per_image: tuple
  images_without_json: int
  missing_optional: Dict[str, int]
  unreadable_images: int = 0
  jsons_without_image: int = 0
  links_not_followed: int = 0

  def summary(self) -> dict:
    """JSON-able summary for logs and `tools/validate_dataset.py`."""
    low, mean, high = self.objects_per_image
    return {"images": self.num_samples, "objects": self.num_objects,
            "objects_per_image": {"min": low, "mean": round(mean, 3), "max": high},
            "images_without_json": self.images_without_json, "jsons_without_image": self.jsons_without_image,
            "links_not_followed": self.links_not_followed, "invalid_images": len(self.invalid_indices),
            "unreadable_images": self.unreadable_images, "problems": len(self.problems),
            "missing_optional_fields": dict(self.missing_optional)}


def _check_sample(source, index, needs_symmetry: bool, needs_evaluation: bool, check_images: bool):
  """(problems, the label or None, image unreadable) of sample `index` of a raw-sample sequence."""
  name = discovery.sample_label_path(source, index)
  try:
    if check_images:
      raw = source[index]
      annotation = raw.annotation
    else:
      annotation = discovery.sample_annotation(source, index)
  except ValueError as error:
    return [f"{name}: file: cannot read JSON ({error})"], None, False
  except RecursionError:
    return [f"{name}: file: cannot read JSON (nested too deeply)"], None, False
  except OSError as error:
    return [f"{name}: file: cannot read ({error})"], None, False
  found = validate_annotation(annotation, needs_symmetry=needs_symmetry, needs_evaluation=needs_evaluation,
                              path=name)
  unreadable = False
  if check_images:
    image_found, decodable = images.image_problems(raw.image_bytes, annotation, raw.path,
                                                   getattr(raw, "json_path", None))
    unreadable = not decodable
    found += image_found
  return found, annotation, unreadable


def validate_source(source, *, needs_symmetry: bool, needs_evaluation: bool, check_images: bool = True,
                    progress: bool = True) -> DatasetReport:
  """Checks every sample of a raw-sample sequence (see `discovery`): its label and, with `check_images`,
  its image (decoded; see `images.image_problems`), in a thread pool with a progress bar (`progress`).
  A folder's labels without an image are problems too."""
  problems, invalid, counts, unreadable = [], [], [], 0
  missing = collections.Counter()
  check = functools.partial(_check_sample, source, needs_symmetry=needs_symmetry,
                            needs_evaluation=needs_evaluation, check_images=check_images)
  with concurrent.futures.ThreadPoolExecutor(_CHECK_THREADS) as pool:
    results = tqdm.tqdm(pool.map(check, range(len(source))), total=len(source), unit="sample",
                        desc="checking dataset", disable=not progress or len(source) < _PROGRESS_FROM,
                        leave=False)
    for index, (found, annotation, image_unreadable) in enumerate(results):
      if isinstance(annotation, dict) and isinstance(annotation.get("objects"), list):
        counts.append(len(annotation["objects"]))
        missing.update(missing_optional_fields(annotation))
      if found:
        problems.extend(found)
        invalid.append(index)
      unreadable += image_unreadable
  orphans = list(getattr(source, "jsons_without_image", ()))
  problems += [f"{path}: image: missing (no {pathlib.Path(path).stem}.jpg/.jpeg/.png/.bmp next to this label)"
               for path in orphans]
  per_image = (min(counts), float(np.mean(counts)), max(counts)) if counts else (0, 0.0, 0)
  return DatasetReport(problems=problems, invalid_indices=invalid, num_samples=len(source),
                       num_objects=int(sum(counts)), objects_per_image=per_image,
                       images_without_json=len(getattr(source, "images_without_json", ())),
                       missing_optional=dict(sorted(missing.items())), unreadable_images=unreadable,
                       jsons_without_image=len(orphans),
                       links_not_followed=len(getattr(source, "links_not_followed", ())))
