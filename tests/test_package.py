"""The package's shape: cheap imports, lazy names that resolve, small modules, and imports that run one way."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from import_check import absolute_imports

PACKAGE = Path(__file__).resolve().parents[1] / "mtt_helpers"
MODULES = sorted(PACKAGE.rglob("*.py"))

LAYERS = {"__main__": 6, "cli": 5, "serving": 4, "backends": 4, "onnx": 3, "training": 3, "model": 2, "data": 1}
"""Each part's layer: a module may import its own layer and those below (the top-level modules are 0).
``backends`` lies at the top of the tree but loads models for the service and the CLI (layer 4);
``__main__`` runs the command line."""


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part(name: str) -> str:
    """``cli`` for ``mtt_helpers.cli.train``; ``""`` for the package itself."""
    return name.split(".")[1] if "." in name else ""


def layer(name: str) -> int:
    return LAYERS.get(part(name), 0)


def imported_modules(path: Path, module_level_only: bool = False) -> set[str]:
    """The ``mtt_helpers`` modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if module_level_only else ast.walk(tree)
    found = set()
    for module, names in absolute_imports(nodes):
        found |= {module, *(f"{module}.{name}" for name in names)}
    known = {module_name(p) for p in MODULES}
    return {name for name in found if name in known}


def test_importing_the_package_and_its_torch_free_parts_does_not_import_torch():
    code = ("import sys, mtt_helpers, mtt_helpers.config, mtt_helpers.precision, mtt_helpers.predictions, "
            "mtt_helpers.reporting, mtt_helpers.timing, mtt_helpers.notebook, mtt_helpers.backends, mtt_helpers.data, "
            "mtt_helpers.data.fetch, mtt_helpers.onnx, mtt_helpers.serving, mtt_helpers.cli;"
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [
    ["--help"], ["train", "--help"],
    ["train", "--data-dir", "/nonexistent/data", "--out", "model"],
    ["predict", "/nonexistent/model", "/nonexistent/input.csv"],
    ["export", "/nonexistent/model", "onnx_out"],
    ["serve", "/nonexistent/model"],
], ids=lambda argv: " ".join(argv))
def test_help_and_argument_errors_import_no_torch(argv, tmp_path):
    """``--help`` and a bad path come back before torch or transformers is imported (each takes seconds)."""
    code = ("import sys\nfrom mtt_helpers.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n"
            "    code = e.code\nheavy = sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules)\n"
            "print(code, heavy, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    status, heavy = result.stderr.strip().splitlines()[-1].split(" ", 1)
    assert heavy == "[]", result.stderr
    assert status == ("0" if "--help" in argv else "2"), result.stderr


@pytest.mark.parametrize("package", ["mtt_helpers", "mtt_helpers.onnx", "mtt_helpers.serving"])
def test_every_lazy_name_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, name
        assert name in dir(module)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here


@pytest.mark.parametrize("package", ["mtt_helpers.model", "mtt_helpers.data", "mtt_helpers.data.fetch",
                                     "mtt_helpers.training"])
def test_every_subpackage_export_exists(package):
    module = importlib.import_module(package)
    assert all(hasattr(module, name) for name in module.__all__)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_modules_are_small(path):
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_imports_run_one_way(path):
    name = module_name(path)
    for imported in imported_modules(path):
        assert layer(imported) <= layer(name), f"{name} (layer {layer(name)}) imports {imported} ({layer(imported)})"
        assert {part(name), part(imported)} != {"onnx", "training"}, "side by side: neither imports the other"


def test_no_import_cycles_at_module_level():
    graph = {module_name(path): imported_modules(path, module_level_only=True) for path in MODULES}
    # A package's own __init__ importing its modules is the usual direction; a module importing its
    # package's names goes through that __init__, so edges into a package count as edges into it.
    state = {}

    def visit(node, stack):
        state[node] = "open"
        for target in graph.get(node, ()):
            if target == node or node.startswith(target + "."):
                continue  # a module reading from a package above it: that package's __init__ runs first
            if state.get(target) == "open":
                raise AssertionError("import cycle: " + " -> ".join([*stack, node, target]))
            if target not in state:
                visit(target, [*stack, node])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
