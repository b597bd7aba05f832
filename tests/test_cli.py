"""The command-line tools: round trips, help, and clear failures that write nothing."""

import errno
import json
import os
import re
import stat
import subprocess
import sys

import pandas as pd
import pytest

from mtt.cli import main, read_texts
from mtt_helpers import MultiTaskSentenceTransformer
from mtt_helpers.data import load_bundled


def cli(*args, cwd=None):
    """``python -m mtt *args`` (the ``mtt`` command) in a subprocess."""
    # umask 022 so that the permission checks below know what an ordinary write gives.
    return subprocess.run(
        [sys.executable, "-m", "mtt", *args], capture_output=True, text=True, timeout=600, cwd=cwd,
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
from mtt.cli import main
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
    # python -m mtt is the same command
    same = subprocess.run([sys.executable, "-m", "mtt", *args], capture_output=True, text=True, timeout=120)
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


TOPIC_TEXTS = {
    "sports": ["The striker scored a late goal in the football match.", "The tennis champion won the final set.",
               "The team won the basketball game last night."],
    "health": ["The doctor prescribed antibiotics for the infection.", "Hospital nurses treated patients with the flu.",
               "A new vaccine lowers the risk of heart disease."],
    "tech": ["The new smartphone has a faster processor.", "Engineers released a software update for the laptop.",
             "The startup built an app using artificial intelligence."],
    "finance": ["The stock market fell after the bank raised interest rates.", "Investors sold shares as inflation rose.",
                "The company reported quarterly earnings and profit."],
    "education": ["Students took their final exams at the university.", "The teacher graded homework for the school class.",
                  "The college offers new courses for undergraduates."],
    "other": ["The chef cooked pasta with tomato sauce.", "We went hiking in the mountains on vacation.",
              "The singer released a new album of songs."],
}
SENTIMENT_TEXTS = {
    "negative": ["I hate this, it is awful and terrible.", "This is the worst day ever, I am so angry.",
                 "What a horrible, disappointing experience."],
    "neutral": ["The meeting is scheduled for Tuesday at noon.", "The report has twelve pages.",
                "The bus arrives at the station at nine."],
    "positive": ["I love this, it is wonderful and amazing!", "Best day ever, I am so happy!",
                 "What a fantastic, delightful experience!"],
}
"""A tiny set a trained head separates perfectly and an untrained or mislabelled one cannot."""


def write_separable(folder, name, texts):
    (folder / name).mkdir(parents=True)
    rows = [(text, label) for label, group in texts.items() for text in group]
    pd.DataFrame(rows * 4, columns=["text", "label"]).to_csv(folder / name / "train.csv", index=False)
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(folder / name / "dev.csv", index=False)
    return rows


def test_train_cli_learns_picks_on_validation_scores_dev_as_served_and_saves_its_settings(tmp_path):
    data = tmp_path / "data"
    topic_rows = write_separable(data, "news", TOPIC_TEXTS)
    sentiment_rows = write_separable(data, "tweets", SENTIMENT_TEXTS)
    out = tmp_path / "model"
    result = cli("train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                 "--sentiment-dataset", "tweets", "--layers", "0", "--epochs", "40", "--seed", "0",
                 "--report", str(tmp_path / "run.md"))
    assert result.returncode == 0, result.stderr
    model = MultiTaskSentenceTransformer.load(out)
    # The heads learned: every dev text gets its own label (an untrained head or swapped names would not).
    predicted = model.predict([text for text, _ in topic_rows + sentiment_rows])
    assert predicted["text_class"].tolist()[:len(topic_rows)] == [label for _, label in topic_rows]
    assert predicted["sentiment"].tolist()[len(topic_rows):] == [label for _, label in sentiment_rows]
    # The epoch was picked on the validation slice; dev was scored once, on the saved model.
    assert "validation_score" in result.stderr and "dev_score" not in result.stderr
    dev_f1 = float(re.search(r"dev topic: accuracy [0-9.]+, macro_f1 ([0-9.]+)", result.stdout)[1])
    assert dev_f1 == 1.0
    report = (tmp_path / "run.md").read_text()
    assert "--layers 0 --epochs 40" in report  # the run's own command and figures (pandas pads the cells)
    assert re.search(rf"\|\s*{dev_f1:.3f}\s*\|", report)
    assert "picked on a validation slice carved from the training rows (6 topic + 3 sentiment, seed 0)" in report
    assert "dev was scored once, on the kept epoch, with the saved model reloaded (128 tokens, fp32)" in report
    # The settings travel with the model: its token limit, and how it was trained.
    from mtt_helpers.training import read_training_args

    assert json.loads((out / "config.json").read_text())["max_seq_length"] == 128
    assert model.max_seq_length == 128
    settings, record = read_training_args(out)
    assert (settings.trainable_encoder_layers, settings.epochs) == (0, 40)
    assert record["datasets"] == {"topic": "news", "sentiment": "tweets"}
    assert record["rows"] == {"train": {"topic": 66, "sentiment": 33}, "validation": {"topic": 6, "sentiment": 3},
                              "dev": {"topic": 18, "sentiment": 9}}
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
    assert read_texts(str(tmp_path / "in.csv")) == ["Great game, we won", "two\nlines"]


def test_predict_output_checks_come_before_any_work(tmp_path, capsys):
    """Both are refused before the (here missing) model is even looked at."""
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "out").mkdir()
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", tmp_path / "out"], capsys)
    assert code == 2 and "is a directory" in err
    sneaky = tmp_path / "out" / ".." / "in.csv"
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", sneaky], capsys)
    assert code == 2 and f"-o {sneaky} is INPUT.csv ({tmp_path / 'in.csv'}), which this command reads" in err
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
        ("--validation-size", "2", "--validation-size: must be an integer >= 6 (one row per class at least), got 2"),
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
    for out, relation in [(data, "is"), (data / "news" / "..", "is"), (data / "news", "lies inside"),
                          (data / "news" / "train.csv", "lies inside"), (tmp_path, "holds")]:
        code, err = run_main(["train", "--data-dir", data, "--out", out, "--overwrite"], capsys)
        assert code == 2 and f"--out {out} {relation} --data-dir ({data}), which this command reads" in err, out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    # A folder that merely looks like a saved model (config.json + heads.safetensors) is not replaced.
    (tmp_path / "looks").mkdir()
    for name in ("config.json", "heads.safetensors", "results.csv"):
        (tmp_path / "looks" / name).write_text("the user's")
    code, err = run_main(["train", "--data-dir", data, "--out", tmp_path / "looks", "--overwrite"], capsys)
    assert code == 2 and "no manifest.json of mtt_helpers" in err and "results.csv" in err
    # Nor is a saved model the user put a file into, nor one reached through a link.
    (saved_model / "notes.md").write_text("the user's")
    try:
        code, err = run_main(["train", "--data-dir", data, "--out", saved_model, "--overwrite"], capsys)
        assert code == 2 and "notes.md" in err
    finally:
        (saved_model / "notes.md").unlink()
    (tmp_path / "link").symlink_to(saved_model)
    code, err = run_main(["train", "--data-dir", data, "--out", tmp_path / "link", "--overwrite"], capsys)
    assert code == 2 and "symbolic link" in err


@pytest.mark.parametrize("flag", ["--report", "--out"])
def test_train_refuses_an_unwritable_output_before_reading_data(tmp_path, capsys, flag):
    (tmp_path / "data").mkdir()  # holds no dataset: reading it would fail with another message
    (tmp_path / "a_file").write_text("x")
    args = {"--out": tmp_path / "m", "--report": None, flag: tmp_path / "a_file" / "inside"}
    argv = ["train", "--data-dir", tmp_path / "data"] + [x for f, v in args.items() if v is not None for x in (f, v)]
    code, err = run_main(argv, capsys)
    assert code == 2 and "a_file is a file, so the folder" in err
    (tmp_path / "a_dir").mkdir()
    if flag == "--report":
        code, err = run_main(["train", "--data-dir", tmp_path / "data", "--out", tmp_path / "m", "--report",
                              tmp_path / "a_dir"], capsys)
        assert code == 2 and "is a directory" in err
        code, err = run_main(["train", "--data-dir", tmp_path / "data", "--out", tmp_path / "m", "--report",
                              tmp_path / "m" / "run.md"], capsys)
        assert code == 2 and "lies inside --out" in err
    assert not (tmp_path / "m").exists()


def test_predict_refuses_an_unwritable_output_before_loading_anything(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "a_file").write_text("x")
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", tmp_path / "a_file" / "out.csv"],
                         capsys)
    assert code == 2 and "a_file is a file, so the folder" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_predict_refuses_a_read_only_folder(tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "locked").mkdir(mode=0o555)
    code, err = run_main(["predict", tmp_path / "nope", tmp_path / "in.csv", "-o", tmp_path / "locked" / "o.csv"],
                         capsys)
    assert code == 2 and "is not writable" in err


# ------------------------------------------------- outputs that would destroy an input
def test_train_refuses_a_report_inside_the_data_before_training(tmp_path, capsys):
    """``--report data/tweeteval_sentiment/train.csv`` would replace the training data with the report."""
    data = tmp_path / "data"
    write_separable(data, "tweeteval_sentiment", SENTIMENT_TEXTS)
    write_separable(data, "huffpost_news_category", TOPIC_TEXTS)
    before = (data / "tweeteval_sentiment" / "train.csv").read_bytes()
    report = data / "tweeteval_sentiment" / "train.csv"
    code, err = run_main(["train", "--data-dir", data, "--out", tmp_path / "m", "--report", report], capsys)
    assert code == 2 and err == (f"error: --report {report} lies inside --data-dir ({data}), which this command "
                                 "reads; write elsewhere\n")
    assert (data / "tweeteval_sentiment" / "train.csv").read_bytes() == before and not (tmp_path / "m").exists()


@pytest.mark.parametrize("target", ["config.json", "heads.safetensors", "predictions.csv"])
def test_predict_refuses_an_output_inside_the_model_folder(saved_model, tmp_path, capsys, target):
    """``-o MODEL/config.json`` would replace the model's own config with predictions."""
    (tmp_path / "in.csv").write_text("text\nhello\n")
    before = sorted((p.name, p.read_bytes()) for p in saved_model.iterdir())
    code, err = run_main(["predict", saved_model, tmp_path / "in.csv", "-o", saved_model / target], capsys)
    assert code == 2 and f"lies inside MODEL_DIR ({saved_model}), which this command reads" in err
    assert sorted((p.name, p.read_bytes()) for p in saved_model.iterdir()) == before


def test_predict_refuses_an_output_inside_an_onnx_export(onnx_export, tmp_path, capsys):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    code, err = run_main(["predict", onnx_export, tmp_path / "in.csv", "--backend", "onnx", "-o",
                          onnx_export / "config.json"], capsys)
    assert code == 2 and "lies inside MODEL_DIR" in err


def test_train_refuses_the_current_folder_before_reading_data(tmp_path, capsys, monkeypatch):
    """``--out .`` (even an empty current folder, with --overwrite) cannot be renamed into place."""
    (tmp_path / "data").mkdir()  # holds no dataset: reading it would fail with another message
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    for out in (".", "..", str(tmp_path / "here")):
        code, err = run_main(["train", "--data-dir", tmp_path / "data", "--out", out, "--overwrite"], capsys)
        assert code == 2 and err == f"error: --out {out} is the current folder or one above it; name a new folder\n"
    assert list((tmp_path / "here").iterdir()) == []


def test_a_full_disk_while_writing_predictions_is_one_line_and_keeps_the_old_file(saved_model, tmp_path, capsys,
                                                                                   monkeypatch):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    (tmp_path / "out.csv").write_text("the earlier predictions")

    def full(self, path, *args, **kwargs):
        with open(path, "w") as handle:
            handle.write("text,text_c")  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    code, err = run_main(["predict", saved_model, tmp_path / "in.csv", "-o", tmp_path / "out.csv"], capsys)
    assert code == 2
    assert err == f"error: -o {tmp_path / 'out.csv'}: cannot write {tmp_path / 'out.csv'}: No space left on device\n"
    assert (tmp_path / "out.csv").read_text() == "the earlier predictions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]  # no half-written temporary


def test_predict_with_the_onnx_backend_imports_no_torch(onnx_export, tmp_path):
    (tmp_path / "in.csv").write_text("text\nWhat a goal!\n")
    result = subprocess.run([sys.executable, "-c", IMPORTS, "predict", str(onnx_export), str(tmp_path / "in.csv"),
                             "--backend", "onnx", "--precision", "int8-safe"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("text,text_class,sentiment")
    assert result.stderr.splitlines()[-1] == "IMPORTED onnxruntime"
