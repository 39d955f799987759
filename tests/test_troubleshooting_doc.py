"""Issue 15, item 9: docs/troubleshooting.md lists every error a user can see (each CenterPoseError subclass)
and every kind of message, each of which must still be in the code (so the page cannot go stale)."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]
# Literal pieces of the user-facing messages (warnings included), one per kind of problem.
MESSAGES = (
    "unknown field of", "not a section with fields", "is not a file", "not valid YAML", "unknown key",
    "image: cannot be decoded", "image: empty file", "smaller than the network's stride",
    "the pixel labels do not fit", "image: missing", "lead outside the dataset root", "cannot read JSON",
    "set dataset.skip_invalid=True to skip them", "no full batch", "sample skipped (sample_weight 0)",
    "no training checkpoint", "cannot be read", "is damaged: resuming from step", "every one is damaged",
    "the checkpoint holds a", "set encryption_key", "was encrypted with a different encryption_key",
    "the training loss is diverging", "stopped without saving", "training goes on", "out of memory",
    "no images", "cannot open the video", "no frame could be read", "camera intrinsics are not set",
    "could not decode", "does not reproduce the JAX model", "is out of range: a job of",
    "could not reach the coordinator", "choose a free port", "processes of the job disagree",
    "cannot be divided evenly", "another process of the job stopped", "expected true or false")


def _user_errors():
  """Names of every class in the package deriving from CenterPoseError (read from the source, nothing imported)."""
  bases = {}
  for path in (REPO / "centerpose_jax").rglob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, ast.ClassDef):
        bases[node.name] = {base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
                            for base in node.bases}
  found = {"CenterPoseError"}
  while True:
    more = {name for name, parents in bases.items() if parents & found} - found
    if not more:
      return found - {"CenterPoseError"}
    found |= more


def test_every_error_class_and_message_is_explained():
  page = (REPO / "docs" / "troubleshooting.md").read_text()
  source = "\n".join(path.read_text() for path in (REPO / "centerpose_jax").rglob("*.py"))
  missing = sorted(name for name in _user_errors() if f"[{name}]" not in page)
  assert not missing, f"error classes not in docs/troubleshooting.md: {missing}"
  assert len(_user_errors()) >= 18
  for message in MESSAGES:
    assert message in page, f"not explained in docs/troubleshooting.md: {message!r}"
    assert message in source, f"no longer in the code (update docs/troubleshooting.md): {message!r}"
