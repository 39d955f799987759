"""Layering: the library, tools and entry points never import the test/bench helpers, nor torch when loaded; the
package's imports point down its layers (docs/architecture.md) without cycles; bench/, tools/ and the entry points
never import tests/."""

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


# Item 1 of issue 16: the package's layers, lowest first. A module may import its own layer and the ones below,
# never one above; a package (centerpose_jax/<name>/) counts as one module of its layer.
LAYERS = (
    ("errors", "geometry", "categories", "config", "encryption", "host_memory"),  # leaves: config schema, frames
    ("mesh", "distributed", "models", "data", "objectron"),  # devices, processes; networks; samples and labels
    ("convert", "checkpoint"),  # weights I/O: TAO formats, Orbax checkpoints
    ("inference",),  # the predict function, predictors (JAX, onnxruntime), post-processing, output
    ("evaluation",),  # Objectron metrics, scoring of decoded batches
    ("training", "export"),
    ("tasks", "config_validation", "cli", "launch", "testing"),  # train/evaluate/infer/export tasks, the command line
)
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def _package_module(name: str):
  """The first component under centerpose_jax of an imported name, or None for other imports."""
  parts = name.split(".")
  return parts[1] if parts[0] == "centerpose_jax" and len(parts) > 1 else None


def _internal_imports(path: pathlib.Path):
  """The centerpose_jax modules (first component) a file imports; `from centerpose_jax import x` imports x."""
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module == "centerpose_jax":
      names = [f"centerpose_jax.{alias.name}" for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      yield name


def _library_files():
  return [path for path in (REPO / "centerpose_jax").rglob("*.py") if "proto" not in path.parts]


def test_every_package_module_has_a_layer():
  top = {path.relative_to(REPO / "centerpose_jax").parts[0].removesuffix(".py") for path in _library_files()}
  assert top - {"__init__"} == set(LAYER_OF), "give new modules a layer in LAYERS (and docs/architecture.md)"


def test_library_imports_point_down_only():
  problems = []
  for path in _library_files():
    relative = path.relative_to(REPO / "centerpose_jax").parts
    own = relative[0].removesuffix(".py")
    if own == "__init__":
      continue
    for name in _internal_imports(path):
      if name.split(".")[0] in ("configs", "tests", "bench", "tools"):
        problems.append(f"{path.relative_to(REPO)} imports {name} (outside the library)")
      target = _package_module(name)
      if target is not None and target != own and LAYER_OF[target] > LAYER_OF[own]:
        problems.append(f"{path.relative_to(REPO)} (layer {LAYER_OF[own]}) imports {name} "
                        f"(layer {LAYER_OF[target]})")
  assert not problems, "\n".join(problems)


def test_no_import_cycle_between_package_modules():
  edges = {}
  for path in _library_files():
    own = path.relative_to(REPO / "centerpose_jax").parts[0].removesuffix(".py")
    for name in _internal_imports(path):
      target = _package_module(name)
      if target is not None and target != own and own != "__init__":
        edges.setdefault(own, set()).add(target)
  state = {}

  def visit(node, trail):
    if state.get(node) == "done":
      return
    assert state.get(node) != "open", "import cycle: " + " -> ".join(trail + [node])
    state[node] = "open"
    for target in sorted(edges.get(node, ())):
      visit(target, trail + [node])
    state[node] = "done"

  for node in sorted(edges):
    visit(node, [])


def test_bench_tools_and_entry_points_do_not_import_the_tests():
  files = list((REPO / "bench").glob("*.py")) + list((REPO / "tools").glob("*.py")) + list(REPO.glob("*.py"))
  assert len(files) > 20
  for path in files:
    for name in _internal_imports(path):
      assert name.split(".")[0] != "tests" and not name.startswith(("helpers", "standin")), f"{path}: {name}"
