"""Every notebook also runs without the external datasets, on the bundled data only.

nbval (see pyproject.toml) executes the notebooks with whatever MTT_DATA_DIR is set (the real
data in CI); this test executes them once more with MTT_DATA_DIR=bundled, the path a reader
without the public datasets takes (offline), and fails on any error or failed assert.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0[1-5]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_bundled_data(path, monkeypatch):
    monkeypatch.setenv("MTT_DATA_DIR", "bundled")  # never the network
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    code = "".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    printed = "".join(output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []))
    if "data_dir()" in code:  # a notebook that picks its data must say it fell back to the bundled set
        assert "bundled" in printed.lower()
