import copy

import numpy as np
import pandas as pd
import pytest
import torch

from mtt_helpers import MultiTaskSentenceTransformer, set_seed
from mtt_helpers.data import load_bundled, multitask_frame, stratified_sample
from mtt_helpers.training import (
    TrainConfig,
    batch_indices,
    cached_embeddings,
    evaluate,
    task_metrics,
    train,
    train_sequential,
)


@pytest.fixture(scope="module")
def frames():
    bundled = load_bundled("train")
    bundled["combo"] = bundled["topic"] + "/" + bundled["sentiment"]
    small = stratified_sample(bundled, 72, label_column="combo", seed=0)
    topic_only = pd.DataFrame({"text": small["text"][:36], "label": small["topic"][:36]})
    sentiment_only = pd.DataFrame({"text": small["text"][36:], "label": small["sentiment"][36:]})
    dev_all = load_bundled("dev")
    dev_all["combo"] = dev_all["topic"] + "/" + dev_all["sentiment"]
    dev = multitask_frame(bundled=stratified_sample(dev_all, 90, label_column="combo", seed=0))
    return multitask_frame(topic=topic_only, sentiment=sentiment_only), multitask_frame(bundled=small), dev


def fresh(encoder):
    set_seed(0)
    # A copy: fine-tuning must not change the session-wide encoder other test files use.
    return MultiTaskSentenceTransformer(copy.deepcopy(encoder))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def unchanged(before, module):
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def quiet_config(tmp_path, **kwargs):
    return TrainConfig(show_progress_bar=False, cache_dir=str(tmp_path), **kwargs)


def test_frozen_training_changes_only_heads_and_learns(encoder, frames, tmp_path):
    _, both, dev = frames
    model = fresh(encoder)
    encoder_before = snapshot(model.encoder)
    before = evaluate(model, dev)
    result = train(model, both, dev, quiet_config(tmp_path, epochs=15, patience=15))
    after = evaluate(model, dev)
    assert unchanged(encoder_before, model.encoder)
    assert after["topic"]["macro_f1"] > max(before["topic"]["macro_f1"], 0.5)
    assert len(result.history) == 15
    assert result.history.loc[result.best_epoch - 1, "dev_score"] == result.history["dev_score"].max()


def test_without_dev_set_every_epoch_runs_and_last_weights_stay(encoder, frames, tmp_path):
    _, both, _ = frames
    model = fresh(encoder)
    result = train(model, both, None, quiet_config(tmp_path, epochs=4, patience=1))
    assert len(result.history) == 4 and result.best_epoch == 4
    assert "dev_score" not in result.history.columns
    # The same run with one epoch more must end with different weights: nothing was restored.
    longer = fresh(encoder)
    train(longer, both, None, quiet_config(tmp_path, epochs=5))
    assert not unchanged(snapshot(model.heads), longer.heads)
    shorter = fresh(encoder)
    train(shorter, both, None, quiet_config(tmp_path, epochs=4))
    assert unchanged(snapshot(model.heads), shorter.heads)


def test_masked_loss_leaves_unlabelled_task_alone(encoder, frames, tmp_path):
    masked, _, dev = frames
    topic_rows = masked.loc[masked["topic"].notna()]
    model = fresh(encoder)
    sentiment_before = snapshot(model.heads["sentiment"])
    train(model, topic_rows, dev, quiet_config(tmp_path, epochs=2, tasks=["topic", "sentiment"]))
    # Every sentiment label is missing, so the sentiment head never gets a gradient.
    assert unchanged(sentiment_before, model.heads["sentiment"])


def test_partial_finetuning_touches_only_top_layers(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    layers = model.encoder[0].auto_model.encoder.layer
    lower, top = snapshot(layers[3]), snapshot(layers[5])
    embeddings_before = snapshot(model.encoder[0].auto_model.embeddings)
    result = train(model, masked, dev, quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2,
                                                      track_gradient_conflict=True))
    assert unchanged(lower, layers[3]) and unchanged(embeddings_before, model.encoder[0].auto_model.embeddings)
    assert not unchanged(top, layers[5])
    assert result.gradient_cosines and all(-1.0 <= c <= 1.0 for c in result.gradient_cosines)
    assert not any(p.requires_grad for p in model.parameters())  # frozen again afterwards


def test_sequential_freezes_encoder_and_first_head(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    first = quiet_config(tmp_path, epochs=1, tasks=["topic"], trainable_encoder_layers=1)
    second = quiet_config(tmp_path, epochs=3, tasks=["sentiment"])
    original_top = snapshot(model.encoder[0].auto_model.encoder.layer[5])
    sentiment_initial = snapshot(model.heads["sentiment"])

    stage_states = {}
    import mtt_helpers.training as training

    real_train = training.train

    def spy(model, train_frame, dev_frame, config):
        if config.tasks == ["sentiment"]:
            stage_states["encoder"] = snapshot(model.encoder)
            stage_states["topic"] = snapshot(model.heads["topic"])
            assert train_frame["sentiment"].notna().all()
        return real_train(model, train_frame, dev_frame, config)

    training.train = spy
    try:
        train_sequential(model, masked, dev, first, second)
    finally:
        training.train = real_train
    assert not unchanged(original_top, model.encoder[0].auto_model.encoder.layer[5])
    assert unchanged(stage_states["encoder"], model.encoder)
    assert unchanged(stage_states["topic"], model.heads["topic"])
    assert not unchanged(sentiment_initial, model.heads["sentiment"])
    with pytest.raises(ValueError, match="heads only"):
        train_sequential(model, masked, dev, first, quiet_config(tmp_path, tasks=["sentiment"], trainable_encoder_layers=1))


def test_training_is_deterministic(encoder, frames, tmp_path):
    _, both, dev = frames
    runs = []
    for _ in range(2):
        model = fresh(encoder)
        history = train(model, both, dev, quiet_config(tmp_path, epochs=3)).history
        runs.append((history.drop(columns="seconds"), snapshot(model.heads)))
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_embedding_cache_hits_memory_and_disk(encoder, tmp_path, monkeypatch):
    model = fresh(encoder)
    texts = ["a cached sentence", "another one", "a cached sentence"]
    first = cached_embeddings(model, texts, str(tmp_path))
    assert torch.equal(first[0], first[2])
    assert len(list(tmp_path.glob("*.safetensors"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("should have been cached")

    monkeypatch.setattr(model, "embed", fail)
    assert torch.equal(cached_embeddings(model, texts[:2], str(tmp_path)), first[:2])
    import mtt_helpers.training as training

    monkeypatch.setattr(training, "_EMBEDDINGS", {})  # a new process: read back from disk
    assert torch.allclose(cached_embeddings(model, texts, str(tmp_path)), first)


def test_cache_key_changes_when_encoder_changes(encoder, tmp_path):
    model = fresh(encoder)
    before = cached_embeddings(model, ["the same text"], str(tmp_path))
    model_copy = copy.deepcopy(model)
    with torch.no_grad():  # (a constant bias shift would vanish in the LayerNorm that follows)
        model_copy.encoder[0].auto_model.encoder.layer[5].output.dense.weight.mul_(1.5)
    after = cached_embeddings(model_copy, ["the same text"], str(tmp_path))
    assert not torch.allclose(before, after)


def test_batch_indices_sampling_modes():
    sources = np.array(["big"] * 90 + ["small"] * 10)
    rng = np.random.default_rng(0)
    proportional = batch_indices(sources, TrainConfig(batch_size=10), rng)
    assert sorted(np.concatenate(proportional).tolist()) == list(range(100))
    round_robin = batch_indices(sources, TrainConfig(batch_size=5, task_sampling="round_robin", steps_per_epoch=6), rng)
    picked = [set(sources[b]) for b in round_robin]
    assert picked == [{"big"}, {"small"}] * 3
    temperature = batch_indices(
        sources, TrainConfig(batch_size=1, task_sampling="temperature", sampling_temperature=1000, steps_per_epoch=2000), rng
    )
    small_share = np.mean([sources[b[0]] == "small" for b in temperature])
    assert 0.45 < small_share < 0.55  # a huge temperature is close to uniform over datasets


def test_task_metrics_match_definitions():
    metrics = task_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)


def test_train_rejects_bad_input(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    with pytest.raises(ValueError, match="not both a model head"):
        train(model, masked, dev, quiet_config(tmp_path, tasks=["mood"]))
    with pytest.raises(ValueError, match="no rows"):
        train(model, masked.iloc[:0], dev, quiet_config(tmp_path))
    with pytest.raises(ValueError, match="task_sampling"):
        TrainConfig(task_sampling="random")
    with pytest.raises(ValueError, match="cannot unfreeze 7"):
        train(model, masked, dev, quiet_config(tmp_path, trainable_encoder_layers=7))


@pytest.mark.parametrize("layer", [0, 3, 5])
def test_top_layers_on_cached_states_match_full_encoder(encoder, layer):
    from mtt_helpers.training import cached_hidden_states, embed_from_layer

    model = fresh(encoder).eval()  # no dropout
    texts = ["x", "A much longer sentence about the stock market falling sharply today.", "ok then"]
    hidden = cached_hidden_states(model, texts, layer)
    assert [h.shape[1] for h in hidden] == [384] * 3
    with torch.no_grad():
        ours = embed_from_layer(model, hidden, layer)
    assert (ours - model.embed(texts)).abs().max().item() <= 1e-5


def test_cached_lower_layers_train_like_plain_finetuning(encoder, frames, tmp_path):
    masked, _, dev = frames
    results = {}
    for cache in (True, False):
        model = fresh(encoder)
        config = quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2, cache_lower_layers=cache)
        results[cache] = (train(model, masked, dev, config), evaluate(model, dev))
    # Same data, order and seed; only dropout in the frozen lower layers differs.
    for task in ("topic", "sentiment"):
        assert abs(results[True][1][task]["accuracy"] - results[False][1][task]["accuracy"]) < 0.1


def test_embeddings_after_top_layer_finetuning_reuse_lower_layers(encoder, frames, tmp_path, monkeypatch):
    masked, _, dev = frames
    model = fresh(encoder)
    train(model, masked, dev, quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2))
    texts = dev["text"].tolist()[:10]
    expected = model.embed(texts)

    def fail(*args, **kwargs):
        raise AssertionError("the lower layers' outputs are cached: no full encoder pass needed")

    monkeypatch.setattr(model, "embed", fail)
    assert (cached_embeddings(model, texts, None) - expected).abs().max().item() <= 1e-5
