"""The command-line tools: round trips, help, and clear failures that write nothing."""

import subprocess
import sys

import pandas as pd
import pytest

from mtt_helpers import MultiTaskSentenceTransformer
from mtt_helpers.data import load_bundled


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, encoder):
    directory = tmp_path_factory.mktemp("model")
    MultiTaskSentenceTransformer(encoder).save(directory, include_encoder=False)
    return directory


@pytest.mark.parametrize("module", ["mtt_helpers.predict", "mtt_helpers.train"])
def test_help(module):
    result = cli(module, "--help")
    assert result.returncode == 0 and "usage" in result.stdout


def test_predict_round_trip(saved_model, tmp_path):
    texts = ["Shares fell 4% after the earnings call.", "What a goal, what a match!", "Flu jabs, now at the pharmacy."]
    pd.DataFrame({"id": [1, 2, 3], "text": texts}).to_csv(tmp_path / "in.csv", index=False)
    result = cli("mtt_helpers.predict", str(saved_model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[:3]) == ["text", "text_class", "sentiment"]
    assert out["text"].tolist() == texts
    expected = MultiTaskSentenceTransformer.load(saved_model).predict(texts)
    assert out["text_class"].tolist() == expected["text_class"].tolist()
    assert abs(out["prob_topic_sports"].to_numpy() - expected["prob_topic_sports"].to_numpy()).max() < 1e-6
    to_stdout = cli("mtt_helpers.predict", str(saved_model), str(tmp_path / "in.csv"))
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
    result = cli("mtt_helpers.predict", str(saved_model), str(tmp_path / "in.csv"), "-o", str(tmp_path / "out.csv"))
    assert result.returncode != 0 and message in result.stderr
    assert not (tmp_path / "out.csv").exists()


def test_predict_missing_model(tmp_path):
    (tmp_path / "in.csv").write_text("text\nhello\n")
    result = cli("mtt_helpers.predict", str(tmp_path / "nope"), str(tmp_path / "in.csv"))
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
    result = cli("mtt_helpers.train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                 "--sentiment-dataset", "tweets", "--layers", "1", "--epochs", "1")
    assert result.returncode == 0, result.stderr
    assert "dev topic: accuracy" in result.stdout and "dev sentiment: accuracy" in result.stdout
    model = MultiTaskSentenceTransformer.load(out)
    assert set(model.predict(["A goal in the last minute."])["text_class"]) <= set(model.config.tasks["topic"])
    again = cli("mtt_helpers.train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                "--sentiment-dataset", "tweets")
    assert again.returncode != 0 and "already exists" in again.stderr


def test_train_cli_bad_data_writes_nothing(tmp_path):
    data = tmp_path / "data"
    bundled = load_bundled()
    write_dataset(data, "news", bundled, "sentiment")  # wrong task's labels
    write_dataset(data, "tweets", bundled, "sentiment")
    out = tmp_path / "model"
    result = cli("mtt_helpers.train", "--data-dir", str(data), "--out", str(out), "--topic-dataset", "news",
                 "--sentiment-dataset", "tweets")
    assert result.returncode != 0 and "expected topic labels" in result.stderr
    missing = cli("mtt_helpers.train", "--data-dir", str(tmp_path / "none"), "--out", str(out))
    assert missing.returncode != 0 and "data directory not found" in missing.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]


def test_predict_onnx_backend_matches_torch(saved_model, tmp_path):
    from mtt_helpers.export import export_onnx

    model = MultiTaskSentenceTransformer.load(saved_model)
    export_onnx(model, tmp_path / "onnx")
    texts = ["Shares fell 4% after the earnings call.", "What a goal!", "a"]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "in.csv", index=False)
    result = cli("mtt_helpers.predict", str(tmp_path / "onnx"), str(tmp_path / "in.csv"), "--backend", "onnx",
                 "-o", str(tmp_path / "out.csv"))
    assert result.returncode == 0, result.stderr
    out = pd.read_csv(tmp_path / "out.csv")
    expected = model.predict(texts)
    assert out["text_class"].tolist() == expected["text_class"].tolist()
    assert out["sentiment"].tolist() == expected["sentiment"].tolist()
