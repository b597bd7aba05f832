"""Runs a notebook as a Colab reader would: in a fresh virtual environment that holds only what the
notebook's first cell installs.

On Colab, each chapter's first code cell installs the package with
``%pip install -q -c {REPO_DIR}/constraints.txt -e "{REPO_DIR}[extra,...]"``. Here
:class:`ColabEnvironments` builds one virtual environment per distinct set of extras: torch first (the
spec conda_env_setup.sh installs), then the project's wheel with those extras under the same
constraints, plus ipykernel (Colab brings its own kernel), and registers it as a Jupyter kernel.
:func:`run_notebook` executes a notebook on that kernel and turns a failing cell into one clear error;
:func:`check_imports` checks, in seconds, that what a notebook imports can be imported there.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

INSTALL_LINE = re.compile(r'^\s*%pip install .*"\{REPO_DIR\}(?:\[(?P<extras>[^\]]*)\])?"', re.M)
"""The first cell's install line; ``extras`` is what it names in brackets, if anything."""

NOT_INHERITED = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
"""Variables of the test process that would let the fresh environment import from elsewhere."""


class NotebookFailed(AssertionError):
    """A notebook's cell raised in its fresh environment."""


def project_extras(pyproject: Path) -> set[str]:
    """The extras a ``pyproject.toml`` defines."""
    return set(tomllib.loads(pyproject.read_text())["project"].get("optional-dependencies", {}))


def install_cell_extras(notebook: Path, known: set[str]) -> tuple[str, ...]:
    """The extras the notebook's first code cell installs, sorted (``()``: the base package only).

    Raises:
        ValueError: the first code cell has no install line, or names an extra not in ``known``.
    """
    cells = [cell for cell in nbformat.read(notebook, as_version=4).cells if cell.cell_type == "code"]
    match = INSTALL_LINE.search(cells[0].source) if cells else None
    if match is None:
        raise ValueError(f'{notebook.name}: its first code cell has no `%pip install ... "{{REPO_DIR}}[extras]"` line.')
    extras = tuple(sorted({name.strip() for name in (match["extras"] or "").split(",") if name.strip()}))
    unknown = sorted(set(extras) - known)
    if unknown:
        raise ValueError(f"{notebook.name}: its install cell names unknown extras {unknown}; pyproject.toml has {sorted(known)}.")
    return extras


def setup_torch_spec(setup_script: Path) -> str:
    """The torch requirement conda_env_setup.sh installs first (its ``TORCH_SPEC=`` line)."""
    match = re.search(r'^TORCH_SPEC="([^"]+)"$', setup_script.read_text(), re.M)
    if match is None:
        raise ValueError(f"{setup_script.name} has no TORCH_SPEC=\"...\" line.")
    return match[1]


PACKAGES = ("mtt_helpers", "mtt", "mtt_core")
"""The import packages the project's one distribution holds."""


def copy_project_sources(root: Path, destination: Path) -> Path:
    """Copies what a wheel of the project is built from (so setuptools' ``build/`` never lands in ``root``)."""
    destination.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, destination / name)
    for package in PACKAGES:
        shutil.copytree(root / package, destination / package, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


def build_wheel(source: Path, directory: Path) -> Path:
    """Builds ``source`` (a project folder) into one wheel in ``directory`` with this interpreter's setuptools."""
    directory.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    subprocess.run([*pip, "wheel", str(source.resolve()), "-w", str(directory), "--no-deps", "--no-build-isolation", "-q"],
                   check=True, cwd=directory.parent)
    (wheel,) = directory.glob("*.whl")
    return wheel


def clean_environment(**overrides: str) -> dict[str, str]:
    """This process's environment without ``NOT_INHERITED``, with ``overrides``."""
    return {key: value for key, value in os.environ.items() if key not in NOT_INHERITED} | overrides


@dataclass(frozen=True)
class Kernel:
    """A fresh virtual environment registered as a Jupyter kernel."""

    name: str
    """Kernel name, e.g. ``colab-onnx-plots-serve``."""
    python: Path
    """The environment's interpreter."""
    kernels_dir: Path
    """Temporary Jupyter kernels folder holding its kernelspec."""
    project: str
    """The distribution's name, ``mtt_helpers`` (its import packages are :data:`PACKAGES`)."""
    installed: str
    """What was installed into it, for messages: ``project[extras] + ipykernel``."""


@dataclass
class ColabEnvironments:
    """One fresh virtual environment per set of extras, built on first use and kept for the session."""

    root: Path
    """Folder for the environments and their kernelspecs (a temporary directory)."""
    wheel: Path
    """The project's wheel."""
    constraints: Path
    """The constraints file every install reads (``pip install -c``)."""
    torch: str | None
    """Requirement installed first, alone, as conda_env_setup.sh does; ``None``: none."""
    stand_ins: tuple[str, ...] = ()
    """Extras added to every environment in place of what Colab has and this machine lacks (the hub)."""
    built: dict[tuple[str, ...], Kernel] = field(default_factory=dict)
    """Kernels built so far, by the notebook extras they were built for."""

    def kernel_for(self, extras: tuple[str, ...]) -> Kernel:
        """The kernel for ``extras``, building its environment the first time it is asked for."""
        if extras not in self.built:
            self.built[extras] = self._build(extras)
        return self.built[extras]

    def _build(self, extras: tuple[str, ...]) -> Kernel:
        name = "colab-" + ("-".join(extras) or "base")
        venv = self.root / name
        self._run([sys.executable, "-m", "venv", str(venv)])
        python = venv / "bin" / "python"
        pip = [str(python), "-m", "pip", "install", "-q", "--no-compile"]
        self._run([*pip, "--upgrade", "pip"])
        if self.torch:
            self._run([*pip, self.torch])
        named, project = ",".join((*extras, *self.stand_ins)), self.wheel.name.split("-")[0]
        requirement = project + (f"[{named}]" if named else "")
        self._run([*pip, "-c", str(self.constraints), f"{requirement} @ {self.wheel.as_uri()}", "ipykernel"])
        prefix = self.root / "jupyter"
        self._run([str(python), "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", name])
        return Kernel(name, python, prefix / "share" / "jupyter" / "kernels", project, f"{requirement} + ipykernel")

    @staticmethod
    def _run(command: list[str]) -> None:
        result = subprocess.run(command, capture_output=True, text=True, env=clean_environment())
        if result.returncode != 0:
            raise RuntimeError(f"`{' '.join(command)}` failed ({result.returncode}):\n{result.stderr[-3000:]}")


def missing_module_hint(message: str, project: str) -> str:
    """Why ``No module named 'x'`` happened: a module the project lacks, or a package no extra installed."""
    missing = re.search(r"No module named '([^'.]+)", message)
    if missing and missing[1] in PACKAGES:
        return f" ({project} has no such module)"
    return " (its first cell must install the extra that brings it)"


def run_notebook(path: Path, kernel: Kernel, timeout: int, env: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """Executes ``path`` on ``kernel`` in its own folder, with the variables of ``env`` added; returns it executed.

    Raises:
        NotebookFailed: a cell raised; the message names the notebook, the cell, the error and the install.
    """
    notebook = nbformat.read(path, as_version=4)
    manager = KernelManager(kernel_name=kernel.name, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kernel.kernels_dir)]))
    client = NotebookClient(notebook, km=manager, timeout=timeout, resources={"metadata": {"path": str(path.parent)}})
    env = clean_environment(**(env or {}))
    env["PATH"] = f"{kernel.python.parent}{os.pathsep}{env.get('PATH', '')}"
    try:
        client.execute(env=env)
    except CellExecutionError as error:
        index, source = next(((i, cell.source) for i, cell in enumerate(notebook.cells, start=1)
                              if any(output.get("output_type") == "error" for output in cell.get("outputs", []))), (0, ""))
        hint = missing_module_hint(error.evalue, kernel.project) if error.ename == "ModuleNotFoundError" else ""
        raise NotebookFailed(f"{path.name}, cell {index} ({source.strip().splitlines()[0] if source.strip() else '?'}), "
                             f"failed with only {kernel.installed} installed: {error.ename}: {error.evalue}{hint}") from None
    return notebook


IMPORT_CHECK = Path(__file__).with_name("import_check.py")
"""The script :func:`check_imports` runs in the fresh environment (standard library only)."""


def notebook_imports(path: Path) -> str:
    """The module-level ``import`` and ``from ... import`` statements of a notebook's code cells, in order."""
    lines = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("%", "!")) else line
                           for line in cell.source.splitlines())  # IPython magics become `pass`, keeping indentation
        lines += [ast.unparse(node) for node in ast.parse(source).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def check_imports(path: Path, kernel: Kernel) -> None:
    """Checks in ``kernel``'s environment that what ``path`` imports can be imported there: its import
    statements, and the imports inside every function and class of each project module it imports
    from (``tests/import_check.py``).

    Raises:
        NotebookFailed: naming each import that failed and the install the environment holds.
    """
    result = subprocess.run([str(kernel.python), str(IMPORT_CHECK), notebook_imports(path), ",".join(PACKAGES)],
                            capture_output=True, text=True, env=clean_environment(), cwd=path.parent)
    if result.returncode != 0:
        raise NotebookFailed(f"{path.name}: with only {kernel.installed} installed, these imports fail "
                             f"(its first cell must install the extra that brings them):\n"
                             f"{result.stdout.strip() or result.stderr.strip()[-3000:]}")
