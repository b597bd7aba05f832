import pandas as pd
import pytest

from mtt_helpers.reporting import markdown_table


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


def test_markdown_table_formats_per_column_and_shows_missing_cells_as_a_dash():
    frame = pd.DataFrame({"speed": [2.0, float("nan")], "mb": [12.345, 3.0], "note": [None, "ok"]},
                         index=pd.Index(["a", "b"], name="backend"))
    assert markdown_table(frame, formats={"speed": "{:.2f}x", "mb": "{:.0f}"}).splitlines()[2:] == [
        "| a | 2.00x | 12 | – |",
        "| b | – | 3 | ok |",
    ]
    with pytest.raises(ValueError, match=r"formats name column\(s\) \['speeed'\]"):
        markdown_table(frame, formats={"speeed": "{:.2f}"})
