"""The three import packages: which may import which, and what starts without torch."""

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest
from import_check import absolute_imports

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtt_helpers", "mtt", "mtt_core")
MAY_IMPORT = {"mtt_core": set(), "mtt_helpers": {"mtt_core"}, "mtt": {"mtt_core", "mtt_helpers"}}
"""``mtt`` (production) may import the tutorial's code and the core; the tutorial only the core; the core neither."""

MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imported_packages(path: Path) -> set[str]:
    """The project packages ``path`` imports, anywhere in the file (inside functions too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {module.split(".")[0] for module, _ in absolute_imports(ast.walk(tree))} & set(PACKAGES)


@pytest.mark.parametrize("path", MODULES, ids=lambda path: str(path.relative_to(ROOT)))
def test_imports_run_one_way(path):
    package = path.relative_to(ROOT).parts[0]
    assert imported_packages(path) - {package} <= MAY_IMPORT[package], f"{package} may import only {MAY_IMPORT[package]}"


def heavy_modules_after(code: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(sorted(m for m in ('torch', 'transformers', "
                             "'sentence_transformers') if m in sys.modules))"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_the_core_the_command_line_the_onnx_runtime_and_the_service_import_no_torch():
    modules = ["mtt_core.files", "mtt_core.model_files", "mtt_core.predictions", "mtt_core.csv_files",
               "mtt_core.onnx_runtime", "mtt.cli", "mtt.backends", "mtt.service", "mtt.client", "mtt.data"]
    assert heavy_modules_after("import " + ", ".join(modules)) == []


def test_an_onnx_backend_loads_and_predicts_without_torch(onnx_export):
    code = (f"from mtt.backends import load_predictor\nmodel = load_predictor({str(onnx_export)!r}, 'onnx', 'int8-safe')\n"
            "model.predict(['Goal in the last minute!'])")
    assert heavy_modules_after(code) == []


@pytest.mark.parametrize("argv", [
    ["--help"], ["train", "--help"], ["export", "--help"],
    ["train", "--data-dir", "/nonexistent/data", "--out", "model"],
    ["predict", "/nonexistent/model", "/nonexistent/input.csv"],
    ["export", "/nonexistent/model", "onnx_out"],
    ["serve", "/nonexistent/model"],
], ids=lambda argv: " ".join(argv))
def test_help_and_argument_errors_import_no_torch(argv, tmp_path):
    """What makes them answer at once: torch and transformers take seconds to import (the time itself is
    measured in the README, never asserted)."""
    code = ("import sys, time\nstart = time.perf_counter()\nfrom mtt.cli import main\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    code = e.code\nheavy = sorted(m for m in ('torch', 'transformers', "
            "'sentence_transformers') if m in sys.modules)\nprint(code, time.perf_counter() - start, heavy, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    status, seconds, heavy = result.stderr.strip().splitlines()[-1].split(" ", 2)
    assert heavy == "[]", result.stderr
    assert status == ("0" if "--help" in argv else "2"), result.stderr


def test_the_tutorial_package_names_the_chapters_api_plainly():
    """``mtt_helpers/__init__.py`` imports every name it exports (no lazy shim, so IDEs see them)."""
    import mtt_helpers

    tree = ast.parse((ROOT / "mtt_helpers" / "__init__.py").read_text(encoding="utf-8"))
    imported = {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert set(mtt_helpers.__all__) <= imported and not hasattr(mtt_helpers, "__getattr__")
    assert all(getattr(mtt_helpers, name) is not None for name in mtt_helpers.__all__)
