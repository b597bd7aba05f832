import copy

import pandas as pd
import pytest
import torch

from mtt_core.labels import TASK_LABELS
from mtt_helpers import MultiTaskSentenceTransformer, TrainConfig, multitask_frame, set_seed, stratified_sample, train
from mtt_helpers.data import load_bundled
from mtt_helpers.embedding_cache import EmbeddingCache
from mtt_helpers.lowres import SelfTrainingConfig, pseudo_labels, self_train


@pytest.fixture(scope="module")
def split():
    train = load_bundled("train").rename(columns={"sentiment": "label"})[["text", "label"]]
    labelled = stratified_sample(train, 30, seed=0)
    pool = train[~train["text"].isin(labelled["text"])]
    return labelled, pool


def fresh(encoder):
    set_seed(0)
    return MultiTaskSentenceTransformer(encoder)


def config(tmp_path, **kwargs):
    return TrainConfig(**{"epochs": 40, "batch_size": 16, "show_progress_bar": False, **kwargs})


def heads_equal(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_pseudo_labels_are_confident_balanced_and_sorted(encoder, split, tmp_path):
    labelled, pool = split
    model = fresh(encoder)
    self_train(model, labelled, [], "sentiment", config(tmp_path), SelfTrainingConfig(threshold=0.99))  # labelled only
    chosen = pseudo_labels(model, pool["text"].tolist(), "sentiment", SelfTrainingConfig(threshold=0.5, per_class=20))
    assert not chosen.empty and (chosen["confidence"] >= 0.5).all()
    assert chosen.groupby("label").size().max() <= 20
    # Each pseudo-label is the model's own prediction, with its probability ...
    predicted = model.predict(chosen["text"].tolist())
    assert chosen["label"].tolist() == predicted["sentiment"].tolist()
    probabilities = predicted[[f"prob_sentiment_{label}" for label in TASK_LABELS["sentiment"]]].max(axis=1)
    assert abs(chosen["confidence"].to_numpy() - probabilities.to_numpy()).max() < 5e-3  # bf16 embeddings where native
    # ... and mostly the true label (chance is 1/3; a head with swapped label names scores far below).
    truth = dict(zip(pool["text"], pool["label"]))
    assert (chosen["label"] == chosen["text"].map(truth)).mean() >= 0.6
    for _, group in chosen.groupby("label"):
        assert group["confidence"].is_monotonic_decreasing
    with pytest.raises(ValueError, match="No unlabelled texts"):
        pseudo_labels(model, [], "sentiment", SelfTrainingConfig())


def test_pseudo_labels_restore_each_modules_mode(encoder, split):
    _, pool = split
    model = fresh(encoder)
    model.train()
    model.encoder.eval()
    expected = [m.training for m in model.modules()]
    pseudo_labels(model, pool["text"].tolist()[:20], "sentiment", SelfTrainingConfig(threshold=0.0))
    assert [m.training for m in model.modules()] == expected


def test_retraining_starts_from_the_initial_head_not_the_labelled_only_one(encoder, split, tmp_path):
    labelled, pool = split
    settings, cache = config(tmp_path), EmbeddingCache()
    model = fresh(encoder)
    _, pseudo = self_train(model, labelled, pool["text"].tolist()[:300], "sentiment", settings,
                           SelfTrainingConfig(threshold=0.4, per_class=30), cache)
    assert len(pseudo) > 0
    # The same head, trained once from its initial weights on labels + the same pseudo-labels (and embeddings).
    reference = fresh(encoder)
    combined = pd.concat([labelled[["text", "label"]], pseudo[["text", "label"]]], ignore_index=True)
    train(reference, multitask_frame(sentiment=combined), None, config(tmp_path, tasks=["sentiment"]), cache)
    assert heads_equal(model.heads["sentiment"], reference.heads["sentiment"])


def test_self_training_retrains_head_with_pseudo_labels_only(encoder, split, tmp_path):
    labelled, pool = split
    texts = pool["text"].tolist() + labelled["text"].tolist()[:5]  # labelled texts in the pool are skipped
    model = fresh(encoder)
    encoder_before = copy.deepcopy(model.encoder.state_dict())
    result, pseudo = self_train(model, labelled, texts, "sentiment", config(tmp_path), SelfTrainingConfig(threshold=0.4, per_class=50))
    assert all(torch.equal(v, model.encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert len(pseudo) > 0 and not set(pseudo["text"]) & set(labelled["text"])
    assert result.history["train_loss_sentiment"].notna().all()
    # The same run with no confident pseudo-label must equal plain training on the labels;
    # with pseudo-labels the head ends elsewhere.
    plain = fresh(encoder)
    _, none = self_train(plain, labelled, texts, "sentiment", config(tmp_path), SelfTrainingConfig(threshold=0.999))
    assert none.empty
    reference = fresh(encoder)
    self_train(reference, labelled, [], "sentiment", config(tmp_path), SelfTrainingConfig(threshold=0.999))
    assert heads_equal(plain.heads["sentiment"], reference.heads["sentiment"])
    assert not heads_equal(model.heads["sentiment"], plain.heads["sentiment"])
    # The topic head is never touched.
    assert heads_equal(model.heads["topic"], fresh(encoder).heads["topic"])


def test_self_training_rejects_bad_settings(encoder, split, tmp_path):
    labelled, pool = split
    model = fresh(encoder)
    with pytest.raises(ValueError, match="frozen"):
        self_train(model, labelled, pool["text"].tolist(), "sentiment", TrainConfig(trainable_encoder_layers=1))
    with pytest.raises(ValueError, match="Unknown task"):
        self_train(model, labelled, pool["text"].tolist(), "mood", config(tmp_path))
    with pytest.raises(ValueError, match="threshold"):
        SelfTrainingConfig(threshold=1.0)
    with pytest.raises(ValueError, match="per_class"):
        SelfTrainingConfig(per_class=0)
