"""Layering: the library, tools and entry points never import the test/bench helpers, nor torch when loaded."""

import ast
import pathlib

REPO = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path):
  """(module-level?, imported module name) of every import statement in a file."""
  tree = ast.parse(path.read_text(), str(path))
  top_level = set(map(id, tree.body))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    else:
      continue
    for name in names:
      yield id(node) in top_level, name


def test_runtime_code_does_not_import_test_helpers_or_torch_at_load_time():
  files = [path for path in (REPO / "centerpose_jax").rglob("*.py") if "testing" not in path.parts]
  files += list((REPO / "tools").glob("*.py")) + list(REPO.glob("*.py"))
  assert len(files) > 40
  for path in files:
    for top_level, name in _imports(path):
      assert not name.startswith("centerpose_jax.testing"), f"{path}: imports {name}"
      assert not (top_level and name.split(".")[0] == "torch"), f"{path}: imports torch when loaded"
