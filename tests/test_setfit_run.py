"""SetFit as chapter 04 runs it: the size of its default pair budget, and a run of the library itself."""

import math

import pytest

from mtt_helpers.data import load_bundled, stratified_sample
from mtt_helpers.lowres import setfit_default_steps, train_setfit

LABEL_SETS = {
    "n=32 as in chapter 04": ["negative"] * 5 + ["neutral"] * 14 + ["positive"] * 13,
    "n=128 as in chapter 04": ["negative"] * 20 + ["neutral"] * 57 + ["positive"] * 51,
    "more positive than negative pairs": ["a"] * 9 + ["b"],
    "two classes, unordered": ["b", "a", "a", "b", "b", "a", "a"],
}


def test_default_steps_of_the_chapter_samples():
    assert setfit_default_steps(LABEL_SETS["n=32 as in chapter 04"]) == 40
    assert setfit_default_steps(LABEL_SETS["n=128 as in chapter 04"]) == 634


@pytest.mark.parametrize("labels", LABEL_SETS.values(), ids=LABEL_SETS.keys())
def test_default_steps_equal_the_pairs_setfits_own_sampler_builds(labels):
    sampler = pytest.importorskip("setfit.sampler")
    texts = [f"text {i}" for i in range(len(labels))]
    pairs = sampler.ContrastiveDataset(texts, labels, multilabel=False)  # the defaults: oversampling, no cap
    assert setfit_default_steps(labels) == math.ceil(len(pairs) / 16)
    assert setfit_default_steps(labels, batch_size=4) == math.ceil(len(pairs) / 4)


def test_default_steps_reject_too_few_labels():
    with pytest.raises(ValueError, match="at least 2 labels"):
        setfit_default_steps(["a"])


@pytest.mark.parametrize("arguments, message", [
    ((["a", "b"], ["x"], 0), "as many labels as texts"),
    ((["a", "b"], ["x", "x"], 0), "2\\+ classes"),
    ((["a", "b"], ["x", "y"], 0, 0), "max_steps must be -1"),
])
def test_bad_runs_are_refused_before_the_model_loads(arguments, message):
    with pytest.raises(ValueError, match=message):
        train_setfit(*arguments)


def test_bad_precision_is_refused_before_the_model_loads():
    with pytest.raises(ValueError, match="precision must be one of"):
        train_setfit(["a", "b"], ["x", "y"], 0, precision="int8")


def test_a_run_at_the_defaults_takes_the_default_steps_in_fp32_and_predicts_known_labels():
    pytest.importorskip("setfit")
    frame = stratified_sample(load_bundled("train"), 6, label_column="sentiment", seed=0)
    texts, labels = frame["text"].tolist(), frame["sentiment"].tolist()
    run = train_setfit(texts, labels, seed=0)  # SetFit's own precision, fp32, even where bf16 is native
    assert run.steps == setfit_default_steps(labels) and run.precision == "fp32" and run.seconds > 0
    assert set(run.predict_labels(texts + ["a new sentence"])) <= set(labels)
    capped = train_setfit(texts, labels, seed=0, max_steps=1, precision="fp32")
    assert capped.steps == 1
