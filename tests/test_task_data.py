"""load_task_data: the notebooks' choice between the external datasets and the bundled set."""

import pandas as pd
import pytest

from mtt_helpers.data import load_bundled, load_task_data

LABELS = {"huffpost_news_category": ["sports", "health", "tech", "finance", "education", "other"] * 5,
          "tweeteval_sentiment": ["negative", "neutral", "positive"] * 10}


@pytest.fixture()
def external(tmp_path):
    for name, labels in LABELS.items():
        for split in ("train", "dev"):
            (tmp_path / name).mkdir(exist_ok=True)
            pd.DataFrame({"text": [f"{name} {split} {i}" for i in range(len(labels))], "label": labels}).to_csv(
                tmp_path / name / f"{split}.csv", index=False)
    return tmp_path


def test_external_data_from_a_folder(external):
    data = load_task_data("dev", external)
    assert data.real and data.bundled is None
    assert data.source == (f"Data: HuffPost headlines (topic) and TweetEval tweets (sentiment), dev split: real text "
                           f"written by people, from {external}.")
    assert "SemEval 2013-2016 pool" in load_task_data("train", external).source  # says how the tweets were rebuilt
    assert data.topic["text"].str.startswith("huffpost_news_category dev").all() and len(data.topic) == 30
    assert data.sentiment["text"].str.startswith("tweeteval_sentiment dev").all()
    frame = data.multitask()
    assert len(frame) == 60 and frame["topic"].notna().sum() == 30 and frame["sentiment"].notna().sum() == 30


def test_external_samples_per_task(external):
    both = load_task_data("train", external, max_per_task=12, seed=0)
    assert len(both.topic) == len(both.sentiment) == 12
    assert both.topic["label"].value_counts().eq(2).all()  # stratified: 2 of each of the 6 topics


def test_bundled_data_without_a_folder():
    data = load_task_data("dev", max_per_task=10)  # the sample applies to external data only
    dev = load_bundled("dev")
    assert not data.real and len(data.topic) == len(data.sentiment) == len(dev) == 270
    assert data.source == "Data: the bundled sentences (written with a language model for this tutorial), dev split."
    assert data.topic["label"].tolist() == dev["topic"].tolist() and data.sentiment["label"].tolist() == dev["sentiment"].tolist()
    frame = data.multitask()  # one row per sentence, both labels
    assert len(frame) == 270 and frame[["topic", "sentiment"]].notna().all().all()


def test_disjoint_bundled_halves_share_no_sentence():
    data = load_task_data("train", disjoint_bundled=True, seed=0)
    assert len(data.topic) == len(data.sentiment) == 630 and data.bundled is None
    assert not set(data.topic["text"]) & set(data.sentiment["text"])
    shuffled = load_bundled("train").sample(frac=1.0, random_state=0)  # what notebook 03 did by hand
    assert data.topic["text"].tolist() == shuffled["text"][:630].tolist()
    assert len(data.multitask()) == 1260
