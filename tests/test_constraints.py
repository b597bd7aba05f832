"""constraints.txt, the tested versions readers install with: it must match the environment the tests
run in, and ``.ci/freeze_constraints.py`` (which writes it) must follow requirements the way pip does."""

import importlib.util
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("freeze_constraints", ROOT / ".ci" / "freeze_constraints.py")
freeze = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(freeze)

FIX = "rerun `bash conda_env_setup.sh` (installs the listed versions), or test newer ones and rerun `bash conda_env_setup.sh freeze`"


def test_every_listed_package_is_installed_at_the_listed_version():
    installed = freeze.installed_distributions()
    problems = [f"{name}=={version}: " + (f"{installed[name].version} installed" if name in installed else "not installed")
                for name, version in freeze.read_pins().items()
                if name not in installed or installed[name].version != version]
    assert not problems, f"constraints.txt and this environment disagree ({FIX}):\n" + "\n".join(problems)


@pytest.mark.skipif(sys.platform != "linux", reason="the file is frozen on Linux, where CI runs; markers differ elsewhere")
def test_every_package_the_requirements_reach_is_listed_or_left_to_the_platform():
    pinned, listed = freeze.pinned_versions(), freeze.read_pins()
    assert sorted(pinned.keys() - listed.keys()) == [], f"installed here but not in constraints.txt ({FIX})"
    assert sorted(listed.keys() - pinned.keys()) == [], f"in constraints.txt but no requirement leads to it ({FIX})"


def test_the_platform_is_left_out_and_the_libraries_the_tutorial_uses_are_pinned():
    listed = freeze.read_pins()
    for name in ("torch", "sympy", "numpy", "pandas", "matplotlib", "pillow", "protobuf", "pip", "mtt-helpers"):
        assert name not in listed, name
    for name in ("sentence-transformers", "transformers", "tokenizers", "onnxruntime", "fastapi", "setfit", "datasets"):
        assert name in listed, name


def fake_installed(**requires: list[str]) -> dict[str, SimpleNamespace]:
    return {name: SimpleNamespace(requires=lines, version="1.0") for name, lines in requires.items()}


def test_closure_follows_extras_and_markers_like_pip():
    installed = fake_installed(
        app=["lib[fast]", "extra-only; extra == 'cli'", "old-python; python_version < '3'"],
        lib=["speedup; extra == 'fast'", "base"], speedup=[], base=[], **{"extra-only": [], "old-python": []})
    assert freeze.required_closure([Requirement("app")], installed) == {"app", "lib", "speedup", "base"}
    assert freeze.required_closure([Requirement("app[cli]")], installed) == {"app", "lib", "speedup", "base", "extra-only"}


def test_closure_names_a_requirement_that_is_not_installed():
    with pytest.raises(LookupError, match="missing>=2 is required but not installed"):
        freeze.required_closure([Requirement("app")], fake_installed(app=["missing>=2"]))


def test_project_requirements_leave_out_the_extras_that_name_the_project(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "my_project"\ndependencies = ["a>=1"]\n'
                         '[project.optional-dependencies]\nx = ["b"]\nall = ["my-project[x]", "c"]\n')
    assert sorted(str(r) for r in freeze.project_requirements(pyproject)) == ["a>=1", "b", "c"]


def test_render_and_read_pins_round_trip_and_a_bad_line_is_named(tmp_path):
    path = tmp_path / "constraints.txt"
    path.write_text(freeze.render({"a-b": "1.0", "c": "2.3.post1"}))
    assert freeze.read_pins(path) == {"a-b": "1.0", "c": "2.3.post1"}
    path.write_text("a==1\nb>=2\n")
    with pytest.raises(ValueError, match=r"constraints.txt:2: expected `name==version`, got 'b>=2'"):
        freeze.read_pins(path)
