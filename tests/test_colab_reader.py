"""The harness that runs each chapter as a Colab reader would (``tests/colab_reader.py``), on throwaway
notebooks and a throwaway project: no torch, so one fresh environment builds in seconds."""

from pathlib import Path

import nbformat
import pytest
from colab_reader import (ColabEnvironments, NotebookFailed, build_wheel, install_cell_extras, missing_module_hint,
                          project_extras, run_notebook, setup_torch_spec)

ROOT = Path(__file__).resolve().parents[1]

THROWAWAY_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "throwaway"
version = "0.1"

[project.optional-dependencies]
yaml = ["pyyaml"]
bars = ["tqdm"]

[tool.setuptools]
py-modules = ["throwaway"]
"""


def install_cell(extras: str) -> str:
    """A first cell shaped like the chapters': it installs only on Colab."""
    return ('import sys\nif "google.colab" in sys.modules:\n'
            f'    %pip install -q -c {{REPO_DIR}}/constraints.txt -e "{{REPO_DIR}}{extras}"\n')


def write_notebook(path: Path, *sources: str) -> Path:
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory):
    """Environments for the throwaway project, and its two notebooks: both install ``[yaml]``; the second
    imports tqdm, which only the ``bars`` extra installs."""
    root = tmp_path_factory.mktemp("throwaway")
    source = root / "project"
    source.mkdir()
    (source / "pyproject.toml").write_text(THROWAWAY_PYPROJECT)
    (source / "throwaway.py").write_text("")
    environments = ColabEnvironments(root / "environments", build_wheel(source, root / "wheel"),
                                     ROOT / "constraints.txt", torch=None)
    first = write_notebook(root / "first.ipynb", install_cell("[yaml]"), "import sys, yaml\nprint(sys.executable)")
    second = write_notebook(root / "second.ipynb", install_cell("[yaml]"), "import yaml\nimport tqdm")
    return environments, project_extras(source / "pyproject.toml"), first, second


def test_a_notebook_runs_in_the_fresh_environment_its_cell_names(throwaway):
    environments, known, first, _ = throwaway
    kernel = environments.kernel_for(install_cell_extras(first, known))
    notebook = run_notebook(first, kernel, timeout=300)
    printed = notebook.cells[1].outputs[0]["text"].strip()
    assert printed == str(kernel.python), "the notebook ran in another interpreter than its fresh environment's"


def test_an_import_its_extras_do_not_install_fails_clearly_in_the_shared_environment(throwaway):
    environments, known, first, second = throwaway
    extras = install_cell_extras(second, known)
    assert extras == install_cell_extras(first, known) == ("yaml",)
    with pytest.raises(NotebookFailed) as failure:
        run_notebook(second, environments.kernel_for(extras), timeout=300)
    message = str(failure.value)
    assert "second.ipynb, cell 2 (import yaml)" in message
    assert "ModuleNotFoundError: No module named 'tqdm'" in message
    assert "throwaway[yaml] + ipykernel" in message and "must install the extra" in message
    assert list(environments.built) == [("yaml",)], "notebooks naming the same extras share one environment"


@pytest.mark.parametrize(("source", "problem"), [
    ("print('no install line')", "has no `%pip install"),
    ('%pip install -q -e "{REPO_DIR}[yaml,plots]"', "unknown extras ['plots']"),
])
def test_install_cell_problems_are_named_before_anything_is_built(tmp_path, source, problem):
    notebook = write_notebook(tmp_path / "bad.ipynb", source)
    with pytest.raises(ValueError, match="bad.ipynb") as failure:
        install_cell_extras(notebook, {"yaml"})
    assert problem in str(failure.value)


def test_no_extras_means_the_base_package_and_torch_comes_from_the_setup_script(tmp_path):
    notebook = write_notebook(tmp_path / "base.ipynb", install_cell(""))
    assert install_cell_extras(notebook, set()) == ()
    assert setup_torch_spec(ROOT / "conda_env_setup.sh").startswith("torch==")


def test_a_missing_module_of_the_project_itself_is_not_blamed_on_the_extras():
    assert missing_module_hint("No module named 'mtt_helpers.utils'", "mtt_helpers") == " (mtt_helpers has no such module)"
    assert "must install the extra" in missing_module_hint("No module named 'setfit'", "mtt_helpers")
