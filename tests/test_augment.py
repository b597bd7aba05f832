import numpy as np
import pandas as pd
import pytest

from mtt_helpers.lowres import NEGATIONS, NeighbourWords, augment_frame, random_edit

LONG = "the match was honestly not great but the crowd in the stadium was loud and happy all night"


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(scope="module")
def neighbours(encoder):
    return NeighbourWords(encoder, top_k=5)


def test_random_edit_is_seeded_and_edits():
    assert random_edit(LONG, rng(1)) == random_edit(LONG, rng(1))
    variants = {random_edit(LONG, rng(seed)) for seed in range(10)}
    assert len(variants - {LONG}) > 5  # (a swap of two equal words can leave the sentence as it was)


def test_random_edit_keeps_negations_and_some_words():
    for seed in range(50):
        words = random_edit(LONG, rng(seed), delete_prob=0.9).split()
        assert "not" in words and words and "not" in NEGATIONS
        assert set(words) <= set(LONG.split())  # it only deletes and reorders
    assert random_edit("hello", rng(0), delete_prob=0.99) == "hello"


@pytest.mark.parametrize("bad, error", [("", ValueError), ("   ", ValueError), (None, TypeError)])
def test_augmenters_reject_empty_or_non_text(bad, error, neighbours):
    with pytest.raises(error):
        random_edit(bad, rng())
    with pytest.raises(error):
        neighbours(bad, rng())


def test_random_edit_rejects_bad_settings():
    with pytest.raises(ValueError, match="delete_prob"):
        random_edit(LONG, rng(), delete_prob=1.0)
    with pytest.raises(ValueError, match="swaps"):
        random_edit(LONG, rng(), swaps=-1)


def test_neighbours_are_close_words_not_the_word_itself(neighbours):
    close = [word for word, _ in neighbours.neighbours("terrible")]
    assert "horrible" in close and "terrible" not in close
    similarities = [s for _, s in neighbours.neighbours("terrible")]
    assert similarities == sorted(similarities, reverse=True)
    with pytest.raises(KeyError, match="not a replaceable word"):
        neighbours.neighbours("the")  # stop words are never replaced
    with pytest.raises(ValueError, match="top_k"):
        NeighbourWords(None, top_k=0)  # checked before the encoder is touched


def test_neighbour_replacement_keeps_mentions_hashtags_negations_and_case(neighbours):
    text = "@user Terrible weather today, not happy. #rain"
    for seed in range(20):
        variant = neighbours(text, rng(seed), fraction=1.0)
        words = variant.split()
        assert words[0] == "@user" and words[-1] == "#rain" and "not" in words
        assert len(words) == len(text.split())
        assert words[1][0].isupper()  # "Terrible" is replaced by a capitalised word
        assert variant != text
    assert neighbours(text, rng(3)) == neighbours(text, rng(3))
    assert neighbours("@user #tag 123", rng(0)) == "@user #tag 123"  # nothing eligible: unchanged


def test_augment_frame_copies_labels_and_is_reproducible(neighbours):
    frame = pd.DataFrame({"text": [LONG, "The service was terrible and slow", "ok"], "label": ["positive", "negative", "neutral"],
                          "row": [0, 1, 2]})
    augmented = augment_frame(frame, random_edit, copies=3, seed=7)
    assert list(augmented.columns) == ["text", "label", "row", "augmented"]
    assert augmented["augmented"].sum() > 0 and (~augmented["augmented"]).sum() == 3
    for _, variant in augmented[augmented["augmented"]].iterrows():
        assert variant["label"] == frame.loc[variant["row"], "label"]  # label travels with its sentence
    assert augmented.groupby("row").size().max() <= 4
    assert not augmented.duplicated(["row", "text"]).any()  # a variant equal to its original is dropped
    pd.testing.assert_frame_equal(augmented, augment_frame(frame, random_edit, copies=3, seed=7))
    assert not augmented.equals(augment_frame(frame, random_edit, copies=3, seed=8))
    # The same sentence gets the same variants whatever sample it is in.
    alone = augment_frame(frame.iloc[[1]], neighbours, copies=2, seed=7)
    together = augment_frame(frame, neighbours, copies=2, seed=7)
    assert set(alone["text"]) <= set(together["text"])


def test_augment_frame_rejects_bad_input():
    frame = pd.DataFrame({"text": ["a b c"], "label": ["neutral"]})
    with pytest.raises(ValueError, match="No column 'sentence'"):
        augment_frame(frame, random_edit, text_column="sentence")
    with pytest.raises(ValueError, match="no rows"):
        augment_frame(frame.iloc[:0], random_edit)
    with pytest.raises(ValueError, match="copies"):
        augment_frame(frame, random_edit, copies=-1)
    assert len(augment_frame(frame, random_edit, copies=0)) == 1
