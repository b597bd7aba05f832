"""The command-line tools: round trips, help, and clear failures that write nothing."""

import os
import stat
import subprocess
import sys

import pandas as pd
import re

import pytest

from mtt_helpers import MultiTaskSentenceTransformer
from mtt_helpers.cli import main
from mtt_helpers.cli import predict as predict_cli
from mtt_helpers.data import load_bundled


def cli(*args, cwd=None):
    """``python -m mtt_helpers *args`` (the ``mtt`` command) in a subprocess."""
    # umask 022 so that the permission checks below know what an ordinary write gives.
    return subprocess.run(
        [sys.executable, "-m", "mtt_helpers", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
        umask=0o022,
    )


def run_main(args, capsys):
    """Runs ``mtt *args`` in this process (faster than a subprocess); returns (exit code, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in args])
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["predict", "train", "export", "serve", "fetch-data"])
def test_help(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"usage: mtt {command} ")


# Runs the command line in a fresh interpreter and reports which heavy libraries it imported.
IMPORTS = """
import sys
from mtt_helpers.cli import main
try:
    main(sys.argv[1:])
finally:
    print("IMPORTED", *sorted(name for name in ("torch", "sentence_transformers", "onnxruntime", "fastapi")
                               if name in sys.modules), file=sys.stderr)
"""


@pytest.mark.parametrize("args, code", [
    (["--help"], 0), ([], 2), (["train", "--bogus"], 2), (["predict", "--help"], 0), (["serve", "m", "--port", "x"], 2),
    (["export", "--help"], 0), (["fetch-data"], 2),
])
def test_help_and_argument_errors_import_no_heavy_library(args, code):
    result = subprocess.run([sys.executable, "-c", IMPORTS, *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == code, result.stderr
    assert result.stderr.splitlines()[-1] == "IMPORTED"
    # python -m mtt_helpers is the same command
    same = subprocess.run([sys.executable, "-m", "mtt_helpers", *args], capture_output=True, text=True, timeout=120)
    assert (same.returncode, same.stdout) == (result.returncode, result.stdout)


def test_predict_round_trip(saved_model, tmp_path):
    texts = ["Shares fell 4% after the earnings call.", "What a goal, what a match!", "Flu jabs, now at the pharmacy."]
    pd.DataFrame({"id": [1, 2, 3], "text": texts}).to_csv(tmp_path / "in.csv", index=False)
    result = cli("predict", str(saved_model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["text", "text_class", "sentiment"]
    assert out["text"].tolist() == texts
    expected = MultiTaskSentenceTransformer.load(saved_model).predict(texts)
    assert out["text_class"].tolist() == expected["text_class"].tolist()
    assert abs(out["prob_topic_sports"].to_numpy() - expected["prob_topic_sports"].to_numpy()).max() < 1e-6
    to_stdout = cli("predict", str(saved_model), str(tmp_path / "in.csv"))
    assert to_stdout.returncode == 0 and to_stdout.stdout.startswith("text,text_class,sentiment")


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "input file not found"),
        ("sentence\nhello\n", "no 'text' column"),
        ("text\n", "has no rows"),
        ('text\nfine\n"  "\n', "empty text on line(s) 3"),
    ],
)
def test_predict_bad_input_writes_nothing(saved_model, tmp_path, content, message):
    if content is not None:
        (tmp_path / "in.csv").write_text(content)
    result = cli("predict", str(saved_model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"))
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_predict_missing_model(tmp_path):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    result = cli("predict", str(tmp_path / "nope"), str(tmp_path / "in.csv"))
    assert result.returncode != 0 and "Model directory not found" in result.stderr


def write_dataset(folder, name, frame, column):
    (folder / name).mkdir(parents=True)
    for split in ("train", "dev"):
        part = frame.loc[frame["split"] == split, ["text", column]].rename(columns={column: "label"})
        part.to_csv(folder / name / f"{split}.csv", index=False)


def test_train_cli_writes_a_loadable_model(tmp_path):
    data = tmp_path / "data"
    bundled = load_bundled()
    bundled = pd.concat([bundled[bundled["split"] == "train"].iloc[::14], bundled[bundled["split"] == "dev"].iloc[::6]])
    write_dataset(data, "news", bundled, "topic")
    write_dataset(data, "tweets", bundled, "sentiment")
    out = tmp_path / "model"
    result = cli("train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                 "--sentiment-dataset", "tweets", "--layers", "1", "--epochs", "1",
                 "--report", str(tmp_path / "run.md"))
    assert result.returncode == 0, result.stderr
    report = (tmp_path / "run.md").read_text()
    dev_f1 = float(re.search(r"dev topic: accuracy [0-9.]+, macro_f1 ([0-9.]+)", result.stdout)[1])
    assert "--layers 1 --epochs 1" in report and f"| {dev_f1:.3f} |" in report  # the run's own figures
    assert "dev topic: accuracy" in result.stdout and "dev sentiment: accuracy" in result.stdout
    model = MultiTaskSentenceTransformer.load(out)
    assert set(model.predict(["A goal in the last minute."])["text_class"]) <= set(model.config.tasks["topic"])
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [out, out / "heads.safetensors", out / "encoder" / "model.safetensors"]}
    assert modes == {"model": 0o755, "heads.safetensors": 0o644, "model.safetensors": 0o644}  # not 0700/0600
    again = cli("train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                "--sentiment-dataset", "tweets")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_train_cli_bad_data_writes_nothing(tmp_path):
    data = tmp_path / "data"
    bundled = load_bundled()
    write_dataset(data, "news", bundled, "sentiment")  # wrong task's labels
    write_dataset(data, "tweets", bundled, "sentiment")
    out = tmp_path / "model"
    result = cli("train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                 "--sentiment-dataset", "tweets")
    assert result.returncode != 0 and "expected topic labels" in result.stderr
    missing = cli("train", "--data-dir", str(tmp_path / "none"), "--out", str(out))
    assert missing.returncode != 0 and "data directory not found" in missing.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_predict_onnx_backend_matches_torch(saved_model, onnx_export, tmp_path):
    model = MultiTaskSentenceTransformer.load(saved_model)  # the model onnx_export was exported from
    texts = ["Shares fell 4% after the earnings call.", "What a goal!", "a"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    result = cli("predict", str(onnx_export), str(tmp_path / "in.csv"), "--backend", "onnx",
                 "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    expected = model.predict(texts)
    assert out["text_class"].tolist() == expected["text_class"].tolist()
    assert out["sentiment"].tolist() == expected["sentiment"].tolist()


# ------------------------------------------------------ predict: input and -o
@pytest.mark.parametrize(
    "content, message",
    [
        ("text\nGreat game, we won\n", "line 2: 2 field(s), but the header has 1"),  # pandas: text " we won"
        ("id,text\n1,fine\n2,a,b\n", "line 3: 3 field(s), but the header has 2"),
        ('text\n"first\nsecond"\n"  "\nok\n', "empty text on line(s) 4"),  # after a two-line field
    ],
)
def test_predict_reads_text_exactly_or_names_the_line(tmp_path, capsys, content, message):
    (tmp_path / "in.csv").write_text(content)
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv"], capsys)
    assert code == 2 and message in err


def test_predict_keeps_quoted_commas_and_multiline_texts(tmp_path):
    (tmp_path / "in.csv").write_text('text\n"Great game, we won"\n"two\nlines"\n')
    assert predict_cli.read_texts(str(tmp_path / "in.csv")) == ["Great game, we won", "two\nlines"]


def test_predict_output_checks_come_before_any_work(tmp_path, capsys):
    """Both are refused before the (here missing) model is even looked at."""
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "out").mkdir()
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", tmp_path / "out"], capsys)
    assert code == 2 and "is a directory" in err
    sneaky = tmp_path / "out" / ".." / "in.csv"
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", sneaky], capsys)
    assert code == 2 and "is the input file" in err
    assert (tmp_path / "in.csv").read_text() == "text\nhello\n"


def test_predict_rejects_batch_size_zero(saved_model, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    code, err = run_main(["predict", saved_model, tmp_path / "in.csv", "--batch-size", "0"], capsys)
    assert code == 2 and "--batch-size: must be an integer >= 1, got 0" in err


def test_predict_output_has_ordinary_permissions(saved_model, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    previous = os.umask(0o022)
    try:
        main(["predict", str(saved_model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv")])
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out.csv").stat().st_mode) == 0o644  # mkstemp alone: 0600


# ------------------------------------------------- train: checks before data
@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--max-per-task", "0", "--max-per-task: must be an integer >= 6 (one row per class at least), got 0"),
        ("--max-per-task", "3", "--max-per-task: must be an integer >= 6 (one row per class at least), got 3"),
        ("--epochs", "0", "--epochs: must be an integer >= 1, got 0"),
        ("--layers", "-1", "--layers: must be an integer >= 0, got -1"),
        ("--layers", "most", "--layers: expected 'all' or an integer >= 0, got 'most'"),
        ("--layers", "10", "--layers 10: the encoder has 6 layers"),
    ],
)
def test_train_checks_numbers_before_reading_data(tmp_path, capsys, flag, value, message):
    (tmp_path / "data").mkdir()  # holds no dataset: reading it would fail with another message
    code, err = run_main(["train", "--data-dir", tmp_path / "data", "--out", tmp_path / "m", flag, value], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "m").exists()


def test_train_overwrite_replaces_only_a_saved_model(tmp_path, capsys, saved_model):
    data = tmp_path / "data"
    write_dataset(data, "news", load_bundled(), "topic")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in (data, data / "news" / "..", data / "news", data / "news" / "train.csv"):
        code, err = run_main(["train", "--data-dir", data, "--out", out, "--overwrite"], capsys)
        assert code == 2 and "replaces only a saved model directory" in err, out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # A saved model that contains the data directory is refused too.
    code, err = run_main(["train", "--data-dir", saved_model, "--out", saved_model, "--overwrite"], capsys)
    assert code == 2 and "would replace the data directory" in err
