"""The README's results tables are copies of files the notebooks write: they must not drift."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- results: (?P<file>\S+) -->\n(?P<body>.*?)<!-- /results -->", re.S)


def test_readme_results_match_notebook_outputs():
    readme = (ROOT / "README.md").read_text()
    blocks = list(BLOCK.finditer(readme))
    assert blocks, "README has no generated results block"
    for block in blocks:
        source = ROOT / block["file"]
        assert source.is_file(), f"{source} is missing: execute the notebook that writes it"
        assert block["body"].strip() == source.read_text().strip(), (
            f"README's copy of {block['file']} is stale: run `bash conda_env_setup.sh run`"
        )
