"""Notebook hygiene, checked on the saved sources (nothing is executed here)."""

import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.name)
def notebook(request):
    return nbformat.read(request.param, as_version=4)


def test_nbval_behaviour_is_a_cell_tag_not_a_comment(notebook):
    for cell in notebook.cells:
        assert not re.search(r"NBVAL_(IGNORE_OUTPUT|SKIP)", cell.source), cell.source[:80]
        tags = cell.metadata.get("tags", [])
        assert set(tags) <= {"nbval-ignore-output", "nbval-skip", "nbval-raises-exception", "nbval-check-output"}


def test_no_stderr_is_stored(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not [o for o in cell.outputs if o.output_type == "stream" and o.name == "stderr"], cell.source[:80]
