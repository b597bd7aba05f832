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


def _runs_file(tmp_path):
    from mtt_helpers.reporting import RunsFile
    return RunsFile(tmp_path / "runs.csv", key=["method", "seed"], scores=["score"], command="make runs")


def _runs():
    return pd.DataFrame({"method": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "score": [0.5, 0.6, 0.7, float("nan")],
                         "seconds": [1.0, 2.0, 3.0, 4.0], "sample_hash": ["h0", "h1", "h0", "h1"]})


def test_runs_file_puts_the_runs_made_again_in_place_of_their_filed_copies(tmp_path):
    runs_file = _runs_file(tmp_path)
    runs_file.write(_runs())
    live = _runs().iloc[[0, 2]].assign(score=[0.503, 0.7], seconds=[9.0, 8.0])
    combined = runs_file.combine(live, {(0,): "h0", (1,): "h1"}, ["seed"])
    assert combined["method"].tolist() == ["a", "a", "b", "b"]  # the file's order
    assert combined["seconds"].tolist() == [9.0, 2.0, 8.0, 4.0]  # live rows replace filed ones, others are read
    assert combined["score"].iloc[0] == 0.503 and pd.isna(combined["score"].iloc[3])


def test_runs_file_refuses_a_run_that_scores_otherwise_a_stale_sample_or_a_missing_run(tmp_path):
    runs_file = _runs_file(tmp_path)
    with pytest.raises(FileNotFoundError, match="make runs"):
        runs_file.combine(_runs(), {}, ["seed"])
    runs_file.write(_runs())
    fingerprints = {(0,): "h0", (1,): "h1"}
    with pytest.raises(ValueError, match=r"scored score = 0\.5400 here and 0\.5000"):
        runs_file.combine(_runs().iloc[[0]].assign(score=0.54), fingerprints, ["seed"])
    with pytest.raises(ValueError, match="other samples.*make runs"):
        runs_file.combine(_runs().iloc[[0]], {(0,): "h0", (1,): "changed"}, ["seed"])
    with pytest.raises(ValueError, match="holds no run"):
        runs_file.combine(_runs().iloc[[0]].assign(method="c"), fingerprints, ["seed"])
    with pytest.raises(ValueError, match="share a key"):
        runs_file.write(pd.concat([_runs(), _runs().iloc[[0]]]))


def test_runs_file_merge_reads_writes_or_leaves_the_file_by_mode(tmp_path):
    from mtt_helpers.reporting import RunsFile
    path, fingerprints = tmp_path / "runs.csv", {(0,): "h0", (1,): "h1"}
    make = lambda mode: RunsFile(path, key=["method", "seed"], scores=["score"], command="make runs", mode=mode)
    assert make("off").merge(_runs(), fingerprints, ["seed"]) is not None and not path.exists()  # off: no file made
    assert len(make("write").merge(_runs(), fingerprints, ["seed"])) == 4 and path.exists()
    assert len(make("read").merge(_runs().iloc[[0]], fingerprints, ["seed"])) == 4  # the other three from the file
    with pytest.raises(ValueError, match="mode must be"):
        make("append")
