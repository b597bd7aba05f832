"""Writes constraints.txt: the tested version of every package the project installs, for readers.

From the repository root:

    bash conda_env_setup.sh freeze                 (sets up, then runs this in that environment)
    .venv/bin/python .ci/freeze_constraints.py     (the same, in an environment already set up)

It reads the project's requirements from pyproject.toml (base and every extra), follows them through
the installed packages' own requirements, and pins each package reached at the version installed
here, except those of the platform (``PLATFORM`` below). ``bash conda_env_setup.sh`` and each
notebook's first cell on Colab install with ``pip install -c constraints.txt``, and
``tests/test_constraints.py`` fails when the running environment and the file disagree.

To move to newer releases: in a fresh environment, install the project without the file
(``pip install torch==2.13.0 -e ".[notebooks,test,offline-model]"``), upgrade what you want, run the
tests, then run this script and commit constraints.txt.
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS_FILE = ROOT / "constraints.txt"

PLATFORM = ("torch", "numpy", "pandas", "scipy", "scikit-learn", "matplotlib", "pyarrow", "protobuf", "ml-dtypes",
            "psutil", "requests")
"""Packages left unpinned, with everything they require: a constraint would replace Colab's own copy."""

INSTALLERS = ("pip", "setuptools", "wheel")
"""The tools that install packages; the environment brings its own."""

HEADER = """\
# Tested versions: every package the project's requirements (pyproject.toml, all extras) lead to, as
# installed in the environment CI runs. Used as `pip install -c constraints.txt` by
# conda_env_setup.sh and by each notebook's first cell on Colab; tests/test_constraints.py fails when
# the environment and this file disagree. Written by `bash conda_env_setup.sh freeze`
# (.ci/freeze_constraints.py): do not edit by hand.
#
# Left out, with every package they require, so that an install on Colab or a GPU machine does not
# replace that platform's own copies (a constraint would up- or downgrade them):
#   torch: Colab and GPU machines keep their CUDA build; a pin of one of its requirements (sympy,
#     networkx, ...) would make pip swap torch itself to satisfy it.
#   numpy, pandas, scipy, scikit-learn, matplotlib: the compiled scientific stack that Colab's other
#     preinstalled libraries are built against and its running kernel may have loaded; replacing it
#     forces a runtime restart. pyproject.toml's lower bounds hold; CI ran the versions the setup
#     script installed.
#   pyarrow, protobuf, ml-dtypes, psutil, requests: compiled or core libraries that Colab's own
#     packages (TensorFlow, JAX, the Google Cloud clients, the kernel) hold at their versions; the
#     tutorial only passes through them.
"""


def project_requirements(pyproject: Path) -> list[Requirement]:
    """The base requirements and every extra's, without the extras that name the project itself."""
    project = tomllib.loads(pyproject.read_text())["project"]
    lines = [*project["dependencies"], *(line for extra in project["optional-dependencies"].values() for line in extra)]
    name = canonicalize_name(project["name"])
    return [requirement for requirement in map(Requirement, lines) if canonicalize_name(requirement.name) != name]


def installed_distributions() -> dict[str, importlib.metadata.Distribution]:
    """Every installed distribution, by canonical name (the first one on ``sys.path`` wins, as for imports)."""
    found = {}
    for distribution in importlib.metadata.distributions():
        found.setdefault(canonicalize_name(distribution.metadata["Name"]), distribution)
    return found


def applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    """Whether ``requirement`` holds here, for a package installed with ``extras``."""
    return requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def required_closure(roots: Iterable[Requirement], installed: Mapping[str, importlib.metadata.Distribution]) -> set[str]:
    """Canonical names of ``roots`` and everything they require, as installed (markers evaluated here).

    Raises:
        LookupError: a requirement that applies here is not installed (set the environment up first).
    """
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [requirement for requirement in roots if applies(requirement, ())]
    while pending:
        requirement = pending.pop()
        name, extras = canonicalize_name(requirement.name), frozenset(requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name not in installed:
            raise LookupError(f"{requirement} is required but not installed: run `bash conda_env_setup.sh` first.")
        requires = map(Requirement, installed[name].requires or [])
        pending.extend(child for child in requires if applies(child, extras))
    return {name for name, _ in seen}


def pinned_versions(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, str]:
    """Canonical name -> installed version of every package constraints.txt lists, sorted by name."""
    installed = installed_distributions()
    platform_packages = required_closure(map(Requirement, PLATFORM), installed)
    names = required_closure(project_requirements(pyproject), installed) - platform_packages - set(INSTALLERS)
    return {name: installed[name].version for name in sorted(names)}


def render(versions: Mapping[str, str]) -> str:
    """The text of constraints.txt: the header, the interpreter it was frozen with, one ``name==version`` a line."""
    frozen_with = f"# Frozen with Python {platform.python_version()} on {sys.platform} ({platform.machine()}).\n"
    return HEADER + frozen_with + "".join(f"{name}=={version}\n" for name, version in versions.items())


def read_pins(path: Path = CONSTRAINTS_FILE) -> dict[str, str]:
    """Canonical name -> version of each ``name==version`` line of a constraints file."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator or not name.strip() or not version.strip():
            raise ValueError(f"{path}:{number}: expected `name==version`, got {line!r}")
        pins[canonicalize_name(name)] = version.strip()
    return pins


def main() -> None:
    versions = pinned_versions()
    CONSTRAINTS_FILE.write_text(render(versions))
    print(f"wrote {CONSTRAINTS_FILE.name}: {len(versions)} packages pinned")


if __name__ == "__main__":
    main()
