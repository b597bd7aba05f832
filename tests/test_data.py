import hashlib
import os
import warnings
from pathlib import Path

import pandas as pd
import pytest

from mtt.data.fetch import DATA_DIR_ENV, DataSettings, default_cache_dir, locate_data
from mtt_core.csv_files import read_text_csv
from mtt_core.labels import SENTIMENT_LABELS, TASK_LABELS
from mtt_core.predictions import InputWarning
from mtt_helpers import quiet
from mtt_helpers.data import (
    IGNORE_INDEX, class_counts, encode_labels, load_bundled, load_external, multitask_frame, sample_fingerprint,
    stratified_sample, validation_split,
)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------- bundled set
def test_bundled_dataset_counts_and_labels():
    frame = load_bundled()
    assert len(frame) >= 1200
    assert frame.attrs["dropped_empty"] == 0
    combos = frame.groupby(["topic", "sentiment"]).size()
    assert len(combos) == 18 and combos.min() >= 50
    assert set(frame["split"]) == {"train", "dev", "test"}
    assert not frame["text"].str.lower().duplicated().any()
    # Every topic x sentiment combination is in every split (stratified split).
    assert (frame.groupby(["split", "topic", "sentiment"]).size() > 0).sum() == 54


def test_bundled_split_filter():
    dev = load_bundled("dev")
    assert set(dev["split"]) == {"dev"}
    assert 0 < len(dev) < len(load_bundled())
    with pytest.raises(ValueError, match="Unknown split"):
        load_bundled("validation")


def test_bundled_rejects_unknown_labels(tmp_path):
    path = write(tmp_path / "b.csv", "text,topic,sentiment,split\nhello,sport,positive,train\n")
    with pytest.raises(ValueError, match=r"\['sport'\] are not topic labels"):
        load_bundled(path=path)


# ------------------------------------------------------------ external loading
def test_load_external_infers_task_and_drops_empty(tmp_path):
    write(tmp_path / "tweets" / "train.csv", 'text,label\nloved it,positive\n"  ",neutral\nmeh,neutral\nawful,negative\n')
    with pytest.warns(InputWarning, match="dropped 1 empty"):
        frame = load_external("tweets", "train", tmp_path)
    assert frame.attrs["task"] == "sentiment"
    assert frame.attrs["dropped_empty"] == 1
    assert frame["text"].tolist() == ["loved it", "meh", "awful"]


def test_dropped_empty_texts_warning_survives_quiet(tmp_path):
    """quiet() hides library UserWarnings; the warning about the user's own data must stay."""
    write(tmp_path / "tweets" / "train.csv", 'text,label\nloved it,positive\n"  ",neutral\n')
    with warnings.catch_warnings(record=True) as caught:
        quiet()
        load_external("tweets", "train", tmp_path)
    assert [str(w.message) for w in caught if "dropped 1 empty" in str(w.message)], caught


def test_unquoted_comma_is_an_error_naming_the_line(tmp_path):
    """pandas would make "Great game" the index and keep " we won" as the text."""
    write(tmp_path / "tweets" / "train.csv", "text,label\nGreat game, we won,positive\nmeh,neutral\n")
    with pytest.raises(ValueError, match=r"train.csv, line 2: 3 field\(s\), but the header has 2"):
        load_external("tweets", "train", tmp_path)


def test_read_text_csv_keeps_text_exactly_and_counts_physical_lines(tmp_path):
    path = write(tmp_path / "in.csv", 'text\n"Great game, we won"\n"two\nlines"\n\n  spaced  \n')
    frame, lines = read_text_csv(path)
    assert frame["text"].tolist() == ["Great game, we won", "two\nlines", "  spaced  "]
    assert lines == [2, 3, 6]  # the quoted field spans lines 3-4; line 5 is blank


def test_non_utf8_training_file_names_the_file(tmp_path):
    path = tmp_path / "tweets" / "train.csv"
    path.parent.mkdir()
    path.write_bytes("text,label\nok,neutral\ncaf\u00e9 cr\u00e8me,positive\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"tweets/train.csv, line 3: not UTF-8"):
        load_external("tweets", "train", tmp_path)


def test_load_external_topic_dataset(tmp_path):
    write(tmp_path / "news" / "dev.csv", "text,label\nrates rise,finance\ncup final,sports\n")
    frame = load_external("news", "dev", tmp_path)
    assert frame.attrs["task"] == "topic"
    assert list(frame.columns) == ["text", "label"]


@pytest.mark.parametrize(
    "content, error, message",
    [
        (None, FileNotFoundError, "Data file not found"),
        ("", ValueError, "is empty"),
        ("text,label\n", ValueError, "no rows"),
        ("sentence,label\nhi,positive\n", ValueError, r"missing column\(s\) \['text'\]"),
        ("text,label\nhi,positive\nyo,sports\n", ValueError, "fit no task"),
        ("text,label\nhi,positve\n", ValueError, "positve"),
    ],
)
def test_load_external_bad_files(tmp_path, content, error, message):
    if content is not None:
        write(tmp_path / "d" / "train.csv", content)
    with pytest.raises(error, match=message):
        load_external("d", "train", tmp_path)


def test_locate_data_follows_mtt_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, "bundled")
    found = locate_data()
    assert found.folder is None and found.origin == "The bundled sentences, as MTT_DATA_DIR=bundled asks."
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        locate_data()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    assert locate_data().folder == tmp_path


def test_unset_data_dir_reads_a_full_download_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("MTT_CACHE_DIR", str(tmp_path / "cache"))
    for name in ("tweeteval_sentiment", "financial_phrasebank", "huffpost_news_category"):
        for split in ("train", "dev"):
            write(tmp_path / "cache" / name / f"{split}.csv", "text,label\nhi,positive\n")
    assert locate_data().folder == tmp_path / "cache"


def test_settings_from_the_environment(tmp_path, monkeypatch):
    for name in ("XDG_CACHE_HOME", "MTT_CACHE_DIR", "MTT_DATA_BASE_URL", DATA_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    default = DataSettings.from_env()
    assert default.cache_dir == Path.home() / ".cache" / "mtt_helpers" / "data"
    assert (default.base_url, default.data_dir) == ("https://raw.githubusercontent.com", "")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == DataSettings.from_env().cache_dir == tmp_path / "xdg" / "mtt_helpers" / "data"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # not absolute: ignored, as the XDG spec says
    assert default_cache_dir() == Path.home() / ".cache" / "mtt_helpers" / "data"
    monkeypatch.setenv("MTT_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("MTT_DATA_BASE_URL", "http://127.0.0.1:8000/mirror/")
    monkeypatch.setenv(DATA_DIR_ENV, "Bundled")
    settings = DataSettings.from_env()
    assert (settings.cache_dir, settings.base_url, settings.bundled_only) == (
        tmp_path / "mine", "http://127.0.0.1:8000/mirror", True)
    monkeypatch.setenv("MTT_DATA_BASE_URL", "raw.githubusercontent.com")
    with pytest.raises(ValueError, match="MTT_DATA_BASE_URL must be an http"):
        DataSettings.from_env()


# --------------------------------------------------------------------- helpers
def test_class_counts_in_label_order():
    counts = class_counts(pd.Series(["positive", "negative", "positive"]), task="sentiment")
    assert counts.index.tolist() == ["negative", "neutral", "positive"]
    assert counts["count"].tolist() == [1, 0, 2]


def test_stratified_sample_is_seeded_and_stratified():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 80 + ["b"] * 20})
    first = stratified_sample(frame, 20, seed=3)
    assert first.equals(stratified_sample(frame, 20, seed=3))
    assert not first.equals(stratified_sample(frame, 20, seed=4))
    assert first["label"].value_counts().to_dict() == {"a": 16, "b": 4}
    assert len(stratified_sample(frame, 500)) == 100
    with pytest.raises(ValueError, match="smaller than the number of classes"):
        stratified_sample(frame, 1)
    with pytest.raises(ValueError, match="No column"):
        stratified_sample(frame, 10, label_column="topic")


def test_stratified_sample_when_too_few_rows_are_left_for_sklearn():
    """101 rows, n=100: one row left over for 3 classes, which scikit-learn's split refuses."""
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(101)], "label": ["a"] * 50 + ["b"] * 30 + ["c"] * 21})
    sample = stratified_sample(frame, 100, seed=1)
    assert len(sample) == 100 and not sample["text"].duplicated().any()
    assert set(sample["text"]) <= set(frame["text"])
    counts = sample["label"].value_counts().to_dict()
    assert sum(counts.values()) == 100
    assert all(abs(counts[label] - share * 100 / 101) < 1 for label, share in {"a": 50, "b": 30, "c": 21}.items())
    assert sample.equals(stratified_sample(frame, 100, seed=1))


def test_stratified_sample_with_a_single_row_class():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": ["a"] * 60 + ["b"] * 39 + ["c"]})
    sample = stratified_sample(frame, 50)
    assert len(sample) == 50
    assert sample["label"].value_counts().to_dict() == {"a": 30, "b": 20}  # c's share, 0.5, rounds away


def test_validation_split_is_seeded_stratified_disjoint_and_complete():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["a"] * 120 + ["b"] * 60 + ["c"] * 20},
                         index=range(1000, 1200))
    train, validation = validation_split(frame, 20, seed=5)
    assert validation["label"].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
    assert len(train) == 180 and not set(train.index) & set(validation.index)
    assert sorted([*train.index, *validation.index]) == list(frame.index)  # every row, once, with its index
    assert train.index.is_monotonic_increasing and validation.index.is_monotonic_increasing
    again, other_seed = validation_split(frame, 20, seed=5)[1], validation_split(frame, 20, seed=6)[1]
    assert again.equals(validation) and not other_seed.equals(validation)
    _, share = validation_split(frame, 0.05, seed=0)  # a share: 5% of 200
    assert len(share) == 10 and set(share["label"]) == {"a", "b", "c"}
    assert len(validation_split(frame.iloc[:130], 0.01)[1]) == 2  # 1.3 rows, but one per class (a, b)


@pytest.mark.parametrize("size, message", [(2, "one row per class"), (200, "leave training rows"),
                                           (1.5, r"share must be in \(0, 1\)"), (0.0, r"share must be in")])
def test_validation_split_refuses_sizes_it_cannot_honour(size, message):
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(200)], "label": ["a", "b", "c", "d"] * 50})
    with pytest.raises(ValueError, match=message):
        validation_split(frame, size)


def test_multitask_frame_marks_missing_labels():
    topic = pd.DataFrame({"text": ["cup final"], "label": ["sports"]})
    sentiment = pd.DataFrame({"text": ["so good"], "label": ["positive"]})
    both = load_bundled("dev").head(2)
    combined = multitask_frame(topic=topic, sentiment=sentiment, bundled=both)
    assert combined["source"].tolist() == ["topic", "sentiment", "bundled", "bundled"]
    assert combined.loc[0, "sentiment"] is None and combined.loc[1, "topic"] is None
    topic_ids = encode_labels(combined, "topic")
    assert topic_ids[0].item() == TASK_LABELS["topic"].index("sports")
    assert topic_ids[1].item() == IGNORE_INDEX
    assert (topic_ids[2:] != IGNORE_INDEX).all()
    with pytest.raises(ValueError, match="Unknown task"):
        multitask_frame(mood=sentiment)
    with pytest.raises(ValueError, match="not sentiment labels"):
        multitask_frame(sentiment=topic)
    with pytest.raises(ValueError, match="neither a 'label' column"):
        multitask_frame(bundled=pd.DataFrame({"text": ["x"]}))


def test_multitask_frame_takes_a_task_of_its_own_with_its_labels():
    tweets = pd.DataFrame({"text": ["so good"], "label": ["positive"]})
    news = pd.DataFrame({"text": ["profit rose"], "label": ["positive"]})
    frame = multitask_frame({"finance": SENTIMENT_LABELS}, sentiment=tweets, finance=news)
    assert list(frame.columns) == ["text", "source", "topic", "sentiment", "finance"]
    assert frame["finance"].tolist() == [None, "positive"] and frame["sentiment"].tolist() == ["positive", None]
    assert encode_labels(frame, "finance", SENTIMENT_LABELS).tolist() == [IGNORE_INDEX, 2]


# ------------------------------------------------ the real datasets (CI only)
REAL = {"tweeteval_sentiment": "sentiment", "financial_phrasebank": "sentiment", "huffpost_news_category": "topic"}


@pytest.mark.skipif(os.environ.get(DATA_DIR_ENV, "bundled").strip() in ("", "bundled"), reason=f"{DATA_DIR_ENV} names no folder")
@pytest.mark.parametrize("name", sorted(REAL))
def test_real_datasets_load(name):
    for split in ("train", "dev"):
        frame = load_external(name, split, os.environ[DATA_DIR_ENV])
        assert frame.attrs["task"] == REAL[name]
        assert len(frame) > 400
        assert set(frame["label"]) == set(TASK_LABELS[REAL[name]])


def test_sample_fingerprint_names_the_rows_in_order():
    frame = pd.DataFrame({"text": ["good day", "bad day", "a day"], "label": ["positive", "negative", "neutral"]})
    expected = hashlib.sha256("good day\tpositive\nbad day\tnegative\na day\tneutral\n".encode()).hexdigest()[:16]
    assert sample_fingerprint(frame) == expected  # the documented format: results files depend on it
    assert sample_fingerprint(frame.iloc[::-1]) != expected
    assert sample_fingerprint(frame.assign(label=["positive", "negative", "positive"])) != expected
    assert sample_fingerprint(frame.rename(columns={"label": "sentiment"}), label_column="sentiment") == expected
    with pytest.raises(ValueError, match="No column"):
        sample_fingerprint(frame, label_column="topic")
