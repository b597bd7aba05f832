import pandas as pd
import pytest

from mtt_helpers.utils import markdown_table


def test_markdown_table_rounds_floats_and_keeps_index():
    frame = pd.DataFrame({"score": [0.12345, 1.0], "note": ["a|b", "c"], "count": [3, 4]},
                         index=pd.Index(["x", "y"], name="method"))
    assert markdown_table(frame).splitlines() == [
        "| method | score | note | count |",
        "|---|---|---|---|",
        "| x | 0.123 | a\\|b | 3 |",
        "| y | 1.000 | c | 4 |",
    ]
    assert "0.12 " in markdown_table(frame, digits=2)


def test_markdown_table_rejects_a_frame_without_columns():
    with pytest.raises(ValueError, match="no columns"):
        markdown_table(pd.DataFrame(index=[1, 2]))
