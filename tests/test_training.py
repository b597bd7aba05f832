import copy
import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import mtt_helpers.precision as precision_module
import mtt_helpers.training as training
import mtt_helpers.training.loop as loop
import mtt_helpers.training.optim as optim
from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, set_seed
from mtt_helpers.data import IGNORE_INDEX, load_bundled, multitask_frame, stratified_sample
from mtt_helpers.precision import resolve_precision
from mtt_helpers.training import (
    EmbeddingCache,
    TrainConfig,
    batch_indices,
    cached_embeddings,
    cached_hidden_states,
    dev_score,
    embed_from_layer,
    evaluate,
    length_grouped_order,
    padded_token_ratio,
    predict_labels,
    task_losses,
    task_metrics,
    train,
    train_sequential,
    truncated_to,
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


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def top_layer(model):
    return model.encoder[0].auto_model.encoder.layer[5]


# ------------------------------------------------------------ strategies
def test_frozen_training_changes_only_heads_learns_and_keeps_best_epoch(encoder, frames, tmp_path):
    _, both, dev = frames
    model = fresh(encoder)
    encoder_before = snapshot(model.encoder)
    with truncated_to(model, 128):  # the embeddings train() uses (and finds in the cache)
        dev_vectors = cached_embeddings(model, dev["text"].tolist(), str(tmp_path), precision="fp32")
    before = evaluate(model, dev, embeddings=dev_vectors)
    result = train(model, both, dev, quiet_config(tmp_path, epochs=15, patience=15, precision="fp32"))
    after = evaluate(model, dev, embeddings=dev_vectors)
    assert unchanged(encoder_before, model.encoder)
    assert after["topic"]["macro_f1"] > max(before["topic"]["macro_f1"], 0.5)
    assert len(result.history) == 15
    best = result.history["dev_score"].max()
    assert result.history.loc[result.best_epoch - 1, "dev_score"] == best
    # The kept weights are the best epoch's: re-scored on the same (cached, 128-token, fp32)
    # embeddings they give the best score. (The scripted test below makes the last epoch worse.)
    assert dev_score(evaluate(model, dev, embeddings=dev_vectors)) == pytest.approx(best, abs=1e-9)
    # The dev loss is the mean cross-entropy over each task's labelled rows, recorded per epoch.
    assert result.history["dev_topic_loss"].iloc[0] > result.history["dev_topic_loss"].min()
    rows = dev["sentiment"].notna().to_numpy()
    with torch.no_grad():
        logits = model.heads["sentiment"](dev_vectors[torch.tensor(rows)])
    targets = torch.tensor([model.config.tasks["sentiment"].index(label) for label in dev["sentiment"][rows]])
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert evaluate(model, dev, embeddings=dev_vectors)["sentiment"]["loss"] == pytest.approx(expected, abs=1e-5)


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


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(encoder, frames, tmp_path, monkeypatch):
    _, both, dev = frames
    model = fresh(encoder)
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])  # best at epoch 2, then two worse epochs
    states = []

    def scripted_score(metrics):
        states.append(snapshot(model.heads))
        return next(scores)

    monkeypatch.setattr(loop, "dev_score", scripted_score)
    result = train(model, both, dev, quiet_config(tmp_path, epochs=6, patience=2))
    assert len(result.history) == 4 and result.best_epoch == 2
    assert unchanged(states[1], model.heads) and not unchanged(states[3], model.heads)


def test_training_one_task_leaves_the_other_head_alone(encoder, frames, tmp_path):
    masked, _, dev = frames
    topic_rows = masked.loc[masked["topic"].notna()]  # no sentiment label at all
    model = fresh(encoder)
    topic_before, sentiment_before = snapshot(model.heads["topic"]), snapshot(model.heads["sentiment"])
    train(model, topic_rows, dev, quiet_config(tmp_path, epochs=2, tasks=["topic"]))
    assert unchanged(sentiment_before, model.heads["sentiment"]) and not unchanged(topic_before, model.heads["topic"])


def test_unlabelled_rows_in_a_mixed_batch_add_no_gradient(encoder):
    model = fresh(encoder).eval()
    embeddings = torch.randn(8, 384)
    topic = torch.tensor([0, 3, 1, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX])

    def topic_head_gradient(vectors, targets):
        model.zero_grad()
        losses = task_losses(model.classify(vectors), {"topic": targets, "sentiment": torch.full_like(targets, IGNORE_INDEX)})
        assert list(losses) == ["topic"]  # a task with no label in the batch has no loss at all
        losses["topic"].backward()
        return [p.grad.clone() for p in model.heads["topic"].parameters()]

    mixed = topic_head_gradient(embeddings, topic)
    labelled_only = topic_head_gradient(embeddings[:4], topic[:4])
    other_unlabelled = topic_head_gradient(torch.cat([embeddings[:4], 5 * torch.randn(4, 384)]), topic)
    for a, b, c in zip(mixed, labelled_only, other_unlabelled):
        assert torch.allclose(a, b, atol=1e-7) and torch.allclose(a, c, atol=1e-7)


def test_partial_finetuning_touches_only_top_layers(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    layers = model.encoder[0].auto_model.encoder.layer
    lower, top = snapshot(layers[3]), snapshot(layers[5])
    embeddings_before = snapshot(model.encoder[0].auto_model.embeddings)
    train(model, masked, dev, quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2))
    assert unchanged(lower, layers[3]) and unchanged(embeddings_before, model.encoder[0].auto_model.embeddings)
    assert not unchanged(top, layers[5])
    assert not any(p.requires_grad for p in model.parameters())  # frozen again afterwards


def test_gradient_cosine_of_two_identical_tasks_is_one(encoder, frames, tmp_path):
    _, both, _ = frames
    # Two heads with the same labels, the same initial weights and no dropout: their
    # gradients on the encoder are identical, so every recorded cosine is 1.
    topic_labels = list(MultiTaskConfig().tasks["topic"])
    config = MultiTaskConfig(tasks={"topic": topic_labels, "topic_copy": topic_labels}, dropout=0.0)
    set_seed(0)
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder), config)
    model.heads["topic_copy"].load_state_dict(model.heads["topic"].state_dict())
    frame = both.assign(topic_copy=both["topic"])
    result = train(model, frame, None, quiet_config(
        tmp_path, epochs=1, steps_per_epoch=2, batch_size=8, trainable_encoder_layers=1, track_gradient_conflict=True))
    assert len(result.gradient_cosines) == 2
    assert result.gradient_cosines == pytest.approx([1.0, 1.0], abs=1e-4)


def test_sequential_freezes_encoder_and_first_head(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    first = quiet_config(tmp_path, epochs=1, tasks=["topic"], trainable_encoder_layers=1)
    second = quiet_config(tmp_path, epochs=3, tasks=["sentiment"])
    original_top = snapshot(top_layer(model))
    sentiment_initial = snapshot(model.heads["sentiment"])

    stage_states = {}
    real_train = loop.train

    def spy(model, train_frame, dev_frame, config):
        if config.tasks == ["sentiment"]:
            stage_states["encoder"] = snapshot(model.encoder)
            stage_states["topic"] = snapshot(model.heads["topic"])
            assert train_frame["sentiment"].notna().all()
        return real_train(model, train_frame, dev_frame, config)

    loop.train = spy
    try:
        train_sequential(model, masked, dev, first, second)
    finally:
        loop.train = real_train
    assert not unchanged(original_top, top_layer(model))
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


def global_random_state():
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def assert_same_random_state(before, after):
    assert torch.equal(before[0], after[0])
    assert all(np.array_equal(a, b) for a, b in zip(before[1], after[1]))
    assert before[2] == after[2]


def test_train_leaves_the_callers_random_state_alone(encoder, frames, tmp_path):
    """train() seeds generators of its own (dropout masks included): the caller's global torch, NumPy
    and Python generators are where they were, and the run does not depend on them."""
    _, both, _ = frames
    heads = []
    for draws in (0, 7):
        model = fresh(encoder)
        torch.rand(draws), np.random.rand(draws), [random.random() for _ in range(draws)]
        before = global_random_state()
        train(model, both, None, quiet_config(tmp_path, epochs=2))
        assert_same_random_state(before, global_random_state())
        heads.append(snapshot(model.heads))
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_whole_encoder_path_trains_everything_truncates_groups_and_schedules(encoder, frames, tmp_path, monkeypatch):
    _, both, _ = frames
    model = fresh(encoder)
    embeddings_before = snapshot(model.encoder[0].auto_model.embeddings)
    widths, schedule, clips = [], {}, []
    real_tokenize, real_schedule, real_clip = model.tokenize, optim.get_linear_schedule_with_warmup, torch.nn.utils.clip_grad_norm_

    def recording_tokenize(texts):
        features = real_tokenize(texts)
        widths.append(features["input_ids"].shape[1])
        return features

    def recording_schedule(optimizer, warmup, total):
        schedule.update(warmup=warmup, total=total)
        return real_schedule(optimizer, warmup, total)

    monkeypatch.setattr(model, "tokenize", recording_tokenize)
    monkeypatch.setattr(optim, "get_linear_schedule_with_warmup", recording_schedule)
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, norm: clips.append(norm) or real_clip(params, norm))
    cache = EmbeddingCache()
    result = train(model, both, None, quiet_config(
        tmp_path, trainable_encoder_layers="all", epochs=2, steps_per_epoch=3, batch_size=8, max_seq_length=12,
        warmup_ratio=0.5), cache=cache)
    assert not unchanged(embeddings_before, model.encoder[0].auto_model.embeddings)  # "all" includes embeddings
    assert not cache.hidden  # nothing frozen, so nothing cached
    assert max(widths) == 12
    assert model.encoder.max_seq_length == model.config.max_seq_length == 12  # kept: the length it trained at
    assert schedule == {"warmup": 3, "total": 6} and clips == [1.0] * 6
    assert result.padded_token_ratio is not None and 1.0 <= result.padded_token_ratio < 1.2
    assert result.precision == resolve_precision("auto")


def test_cached_lower_layers_train_exactly_like_plain_finetuning(encoder, frames, tmp_path):
    masked, _, _ = frames
    initial = snapshot(fresh(encoder))
    trained = {}
    for cache in (True, False):
        model = no_dropout(fresh(encoder))
        config = quiet_config(tmp_path, epochs=1, steps_per_epoch=3, batch_size=8, trainable_encoder_layers=2,
                              cache_lower_layers=cache, precision="fp32")
        train(model, masked, None, config)
        trained[cache] = model
    cached, plain = snapshot(trained[True]), snapshot(trained[False])
    update = {name: (cached[name] - before).abs().max().item() for name, before in initial.items()}
    assert update["encoder.0.model.encoder.layer.5.output.dense.weight"] > 1e-5  # the top layers really trained
    assert update["encoder.0.model.encoder.layer.3.output.dense.weight"] == 0
    # Both paths end at the same weights up to float rounding: under 5% of the largest update of
    # the encoder and of the heads (Adam amplifies rounding where a gradient is near its epsilon).
    for part in ("encoder.", "heads."):
        names = [name for name in cached if name.startswith(part)]
        difference = max((cached[name] - plain[name]).abs().max().item() for name in names)
        assert difference <= 0.05 * max(update[name] for name in names), part
    texts = masked["text"].tolist()[:8]
    logits = [trained[cache].predict_logits(texts)["topic"] for cache in (True, False)]
    assert torch.allclose(logits[0], logits[1], atol=1e-4)


def test_embeddings_after_top_layer_finetuning_reuse_lower_layers(encoder, frames, tmp_path, monkeypatch):
    masked, _, dev = frames
    model = fresh(encoder)
    train(model, masked, dev, quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2, max_seq_length=None,
                                           precision="fp32"))
    texts = dev["text"].tolist()[:10]
    expected = model.embed(texts)

    def fail(*args, **kwargs):
        raise AssertionError("the lower layers' outputs are cached: no full encoder pass needed")

    monkeypatch.setattr(model, "embed", fail)
    assert (cached_embeddings(model, texts, None, precision="fp32") - expected).abs().max().item() <= 1e-5


# ------------------------------------------------------------ labels and data
def test_label_order_comes_from_the_model_config(encoder, frames, tmp_path):
    _, both, dev = frames
    reversed_tasks = {task: labels[::-1] for task, labels in MultiTaskConfig().tasks.items()}
    set_seed(0)
    model = MultiTaskSentenceTransformer(encoder, MultiTaskConfig(tasks=reversed_tasks))
    train(model, both, None, quiet_config(tmp_path, epochs=15))
    predicted = model.predict(both["text"].tolist())
    assert (predicted["sentiment"] == both["sentiment"]).mean() > 0.8  # swapped names would score near 0.3
    assert (predicted["text_class"] == both["topic"]).mean() > 0.8


def test_nan_labels_from_concat_are_unlabelled(encoder, frames, tmp_path):
    masked, _, dev = frames
    topic_part = masked[masked["topic"].notna()][["text", "topic"]]
    sentiment_part = masked[masked["sentiment"].notna()][["text", "sentiment"]]
    concatenated = pd.concat([topic_part, sentiment_part], ignore_index=True)  # missing labels are NaN
    assert concatenated["sentiment"].isna().sum() == len(topic_part)
    concatenated.loc[0, "sentiment"] = pd.NA
    runs = []
    for frame in (concatenated, masked.drop(columns="source")):
        model = fresh(encoder)
        train(model, frame, dev, quiet_config(tmp_path, epochs=2))
        runs.append(snapshot(model.heads))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


@pytest.mark.parametrize("problem", ["empty", "blank texts", "no sentiment labels", "no sentiment column"])
def test_dev_set_without_usable_labels_is_refused(encoder, frames, tmp_path, problem):
    masked, _, dev = frames
    bad = {
        "empty": dev.iloc[:0],
        "blank texts": dev.assign(text="  "),
        "no sentiment labels": dev.assign(sentiment=None),
        "no sentiment column": dev.drop(columns="sentiment"),
    }[problem]
    model = fresh(encoder)
    heads_before = snapshot(model.heads)
    with pytest.raises(ValueError, match="dev_frame"):
        train(model, masked, bad, quiet_config(tmp_path, epochs=1))
    assert unchanged(heads_before, model.heads)  # refused before any training


# ------------------------------------------------------------ modes and pooling
def test_helpers_restore_train_and_eval_modes(encoder, frames, tmp_path, monkeypatch):
    _, _, dev = frames
    model = fresh(encoder)
    model.train()
    model.encoder.eval()  # a mixed state, as during frozen training
    expected = [m.training for m in model.modules()]
    texts = dev["text"].tolist()[:4]
    predict_labels(model, texts, "topic")
    predict_labels(model, texts, "topic", cached_embeddings(model, texts, None))
    evaluate(model, dev.iloc[:8])
    lower_layers_only = EmbeddingCache()  # token vectors but no sentence embeddings yet:
    cached_hidden_states(model, texts, 4, cache=lower_layers_only)
    lower_layers_only.embeddings.clear()
    cached_embeddings(model, texts, None, cache=lower_layers_only)  # ... so this takes the lower-layer branch
    assert [m.training for m in model.modules()] == expected

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("mtt_helpers.training.cache_embeddings.embed_from_layer", broken)
    lower_layers_only.embeddings.clear()
    with pytest.raises(RuntimeError, match="boom"):
        cached_embeddings(model, texts, None, cache=lower_layers_only)
    assert [m.training for m in model.modules()] == expected


def test_train_ends_frozen_in_eval_mode_and_untruncated_even_after_an_error(encoder, frames, tmp_path, monkeypatch):
    masked, _, _ = frames
    model = fresh(encoder)

    def broken(*args, **kwargs):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(loop, "task_losses", broken)
    with pytest.raises(RuntimeError, match="interrupted"):
        train(model, masked, None, quiet_config(tmp_path, trainable_encoder_layers=1, max_seq_length=16))
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert model.encoder.max_seq_length == 256 and model.config.max_seq_length is None  # as before the run


def cls_pooling_model(encoder):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    transformer = copy.deepcopy(encoder[0])
    cls_encoder = SentenceTransformer(modules=[transformer, Pooling(384, pooling_mode="cls")], device="cpu")
    set_seed(0)
    return MultiTaskSentenceTransformer(cls_encoder).eval()


def test_cached_layer_path_uses_the_encoders_own_pooling(encoder, frames, tmp_path):
    _, both, dev = frames
    model = cls_pooling_model(encoder)
    texts = ["x", "A much longer sentence about the stock market falling sharply today.", "ok then"]
    hidden = cached_hidden_states(model, texts, 4, precision="fp32")
    with torch.no_grad():
        assert (embed_from_layer(model, hidden, 4) - model.embed(texts)).abs().max().item() <= 1e-5
    # Training through the cache scores dev exactly as the model's own predict path does.
    result = train(model, both, dev, quiet_config(tmp_path, epochs=1, trainable_encoder_layers=2, precision="fp32",
                                                   max_seq_length=None))
    assert dev_score(evaluate(model, dev)) == pytest.approx(result.history["dev_score"].iloc[0], abs=1e-9)


@pytest.mark.parametrize("layer", [0, 3, 5])
def test_top_layers_on_cached_states_match_full_encoder(encoder, layer):
    model = fresh(encoder).eval()  # no dropout
    texts = ["x", "A much longer sentence about the stock market falling sharply today.", "ok then"]
    hidden = cached_hidden_states(model, texts, layer, precision="fp32")
    assert [h.shape[1] for h in hidden] == [384] * 3
    with torch.no_grad():
        ours = embed_from_layer(model, hidden, layer)
    assert (ours - model.embed(texts)).abs().max().item() <= 1e-5


# ------------------------------------------------------------ precision
def test_auto_precision_follows_the_hardware_detector(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16")


def test_bf16_and_fp32_training_agree_on_dev(encoder, frames, tmp_path):
    _, both, dev = frames
    scores = {}
    for precision in ("fp32", "bf16"):
        model = fresh(encoder)
        result = train(model, both, dev, quiet_config(tmp_path, epochs=10, patience=10, precision=precision))
        assert result.precision == precision
        scores[precision] = result.history["dev_score"].max()
    assert scores["fp32"] > 0.5
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.03  # stated tolerance: 3 points of dev score


# ------------------------------------------------------------ caches
def test_embedding_cache_hits_memory_and_disk(encoder, tmp_path, monkeypatch):
    model = fresh(encoder)
    texts = ["a cached sentence", "another one", "a cached sentence"]
    cache = EmbeddingCache()
    first = cached_embeddings(model, texts, str(tmp_path), cache=cache)
    assert torch.equal(first[0], first[2])
    assert len(list(tmp_path.glob("*/part-*.safetensors"))) == 1

    def fail(*args, **kwargs):
        raise AssertionError("should have been cached")

    monkeypatch.setattr(model, "embed", fail)
    assert torch.equal(cached_embeddings(model, texts[:2], str(tmp_path), cache=cache), first[:2])
    # A new process: read back from disk.
    assert torch.equal(cached_embeddings(model, texts, str(tmp_path), cache=EmbeddingCache()), first)
    training.clear_caches()
    assert not training.DEFAULT_CACHE.embeddings


def test_disk_cache_survives_concurrent_writers_and_damaged_files(encoder, tmp_path, monkeypatch):
    model = fresh(encoder)
    # Two processes that both started with an empty cache each embed different texts.
    writer_a, writer_b = EmbeddingCache(), EmbeddingCache()
    a = cached_embeddings(model, ["text of process a"], str(tmp_path), cache=writer_a)
    b = cached_embeddings(model, ["text of process b"], str(tmp_path), cache=writer_b)
    (folder,) = tmp_path.iterdir()
    # A damaged file (as a crash of an older, non-atomic writer would leave) is a miss with a warning.
    (folder / "part-damaged.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    real_embed = model.embed
    monkeypatch.setattr(model, "embed", lambda *args, **kwargs: pytest.fail("both entries must be on disk"))
    with pytest.warns(UserWarning, match="unreadable"):
        both = cached_embeddings(model, ["text of process a", "text of process b"], str(tmp_path), cache=EmbeddingCache())
    assert torch.equal(both, torch.cat([a, b]))
    assert not (folder / "part-damaged.safetensors").exists()

    # An interrupted write publishes nothing: no part file, no temporary file left behind.
    monkeypatch.setattr(model, "embed", real_embed)
    parts_before = sorted(folder.iterdir())

    def interrupted_save(tensors, path):
        open(path, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr("mtt_helpers.training.cache_disk.save_file", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        cached_embeddings(model, ["a text being written when the user pressed Ctrl-C"], str(tmp_path), cache=EmbeddingCache())
    assert sorted(folder.iterdir()) == parts_before
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing unreadable left
        cached_embeddings(model, ["text of process a"], str(tmp_path), cache=EmbeddingCache())


def test_in_memory_cache_is_bounded(encoder):
    model = fresh(encoder)
    cache = EmbeddingCache(max_embedding_states=2)
    for length in (16, 32, 64):  # three encoder states (the max length is part of the key)
        with truncated_to(model, length):
            cached_embeddings(model, ["a text"], None, cache=cache)
    assert len(cache.embeddings) == 2


def test_cache_key_changes_when_encoder_changes(encoder, tmp_path):
    model = fresh(encoder)
    before = cached_embeddings(model, ["the same text"], str(tmp_path))
    model_copy = copy.deepcopy(model)
    with torch.no_grad():  # (a constant bias shift would vanish in the LayerNorm that follows)
        model_copy.encoder[0].auto_model.encoder.layer[5].output.dense.weight.mul_(1.5)
    after = cached_embeddings(model_copy, ["the same text"], str(tmp_path))
    assert not torch.allclose(before, after)


# ------------------------------------------------------------ batching
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


@pytest.mark.parametrize("sampling", ["proportional", "round_robin"])
def test_length_grouping_pads_less_keeps_every_row_and_is_seeded(sampling):
    counts = np.random.default_rng(1).integers(5, 120, size=640)
    sources = np.array(["a", "b"] * 320)
    config = TrainConfig(batch_size=16, task_sampling=sampling)

    def epoch(grouping, seed):
        return batch_indices(sources, TrainConfig(**{**config.__dict__, "length_grouping": grouping}),
                             np.random.default_rng(seed), counts)

    grouped, plain = epoch(True, 0), epoch(False, 0)
    if sampling == "proportional":
        assert sorted(np.concatenate(grouped).tolist()) == list(range(640))
    else:
        assert [set(sources[b]) for b in grouped[:4]] == [{"a"}, {"b"}, {"a"}, {"b"}]
    assert padded_token_ratio(grouped, counts) < 1.1 < 1.5 < padded_token_ratio(plain, counts)
    assert all(np.array_equal(x, y) for x, y in zip(grouped, epoch(True, 0)))
    assert not all(np.array_equal(x, y) for x, y in zip(grouped, epoch(True, 1)))
    # Batches come in random order, not sorted by length across the chunk.
    assert not np.all(np.diff([counts[b].mean() for b in grouped[:20]]) >= 0)


def test_length_grouped_order_is_a_permutation():
    rows = np.random.default_rng(0).permutation(100)
    order = length_grouped_order(rows, np.arange(100) % 7, 8, np.random.default_rng(0), chunk_batches=3)
    assert sorted(order.tolist()) == list(range(100))


def test_task_metrics_match_definitions():
    metrics = task_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)


def test_bf16_training_steps_lower_the_loss_and_change_fp32_weights(encoder, frames, tmp_path):
    """Whole-encoder steps under bf16 autocast: the backward pass runs through bf16 activations,
    the loss falls, every weight (encoder and heads) moves, and every parameter stays fp32."""
    _, both, _ = frames
    model = fresh(encoder)
    before = snapshot(model)
    activation_dtypes = set()
    hook = top_layer(model).output.dense.register_forward_hook(
        lambda module, args, output: activation_dtypes.add(output.dtype) if torch.is_grad_enabled() else None)
    try:
        result = train(model, both.iloc[:16], None, quiet_config(
            tmp_path, trainable_encoder_layers="all", precision="bf16", epochs=6, batch_size=8, max_seq_length=32,
            head_lr=1e-2, encoder_lr=1e-4, warmup_ratio=0.0))
    finally:
        hook.remove()
    assert result.precision == "bf16" and activation_dtypes == {torch.bfloat16}
    losses = result.history["train_loss_topic"] + result.history["train_loss_sentiment"]
    assert losses.iloc[-1] < 0.8 * losses.iloc[0], losses.tolist()
    after = snapshot(model)
    for name in ("encoder.0.model.embeddings.word_embeddings.weight",
                 "encoder.0.model.encoder.layer.0.attention.self.query.weight",
                 "encoder.0.model.encoder.layer.5.output.dense.weight",
                 "heads.topic.classifier.weight", "heads.sentiment.dense.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert {p.dtype for p in model.parameters()} == {torch.float32}


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad_text", [float("nan"), None, 42, "   "])
def test_train_names_the_row_of_a_text_that_is_not_a_string(encoder, frames, tmp_path, bad_text):
    masked, _, dev = frames
    frame = masked.assign(text=masked["text"].astype(object))
    frame.loc[frame.index[3], "text"] = bad_text
    model = fresh(encoder)
    heads_before = snapshot(model.heads)
    with pytest.raises(ValueError, match=rf"train_frame has 1 empty or non-string text\(s\): row 3 \(index 3\)"):
        train(model, frame, dev, quiet_config(tmp_path, epochs=1))
    assert unchanged(heads_before, model.heads)


def test_a_task_without_labelled_rows_is_refused(encoder, frames, tmp_path):
    masked, _, _ = frames
    topic_only = masked.assign(sentiment=None)  # e.g. a frame built without any sentiment dataset
    model = fresh(encoder)
    with pytest.raises(ValueError, match=r"no labelled row for task\(s\) \['sentiment'\]"):
        train(model, topic_only, None, quiet_config(tmp_path, epochs=1))
    train(model, topic_only, None, quiet_config(tmp_path, epochs=1, tasks=["topic"]))  # asked for topic only: fine


def test_a_nan_loss_stops_training_naming_the_task_and_step(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    with torch.no_grad():
        model.heads["sentiment"].classifier.bias[0] = float("nan")
    with pytest.raises(FloatingPointError, match=r"The sentiment loss is nan at epoch 1, step \d+ of \d+"):
        train(model, masked, dev, quiet_config(tmp_path, epochs=2))
    model = fresh(encoder)
    with pytest.raises(FloatingPointError, match=r"The topic loss is (inf|nan) at epoch 1, step \d+ of"):
        train(model, masked, dev, quiet_config(tmp_path, epochs=2, head_lr=1e30, task_weights={"topic": 1e38}))


def test_the_model_keeps_the_token_limit_it_was_trained_and_picked_at(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    result = train(model, masked, dev, quiet_config(tmp_path, epochs=1, max_seq_length=64), selection_split="validation")
    assert model.config.max_seq_length == model.encoder.max_seq_length == 64
    assert result.selection_split == "validation" and "validation_score" in result.history
    assert not any(column.startswith("dev_") for column in result.history.columns)
    assert result.rows == {"train": {"topic": 36, "sentiment": 36}, "validation": {"topic": 90, "sentiment": 90}}
    assert train(model, masked, None, quiet_config(tmp_path, epochs=1)).selection_split is None
    with pytest.raises(ValueError, match="above the encoder's position limit"):
        train(model, masked, None, quiet_config(tmp_path, epochs=1, max_seq_length=600))


def test_train_rejects_bad_input(encoder, frames, tmp_path):
    masked, _, dev = frames
    model = fresh(encoder)
    with pytest.raises(ValueError, match="not both a model head"):
        train(model, masked, dev, quiet_config(tmp_path, tasks=["mood"]))
    with pytest.raises(ValueError, match="no rows"):
        train(model, masked.iloc[:0], dev, quiet_config(tmp_path))
    with pytest.raises(ValueError, match="cannot unfreeze 7"):
        train(model, masked, dev, quiet_config(tmp_path, trainable_encoder_layers=7))
    with pytest.raises(ValueError, match="are not topic labels"):
        train(model, masked.assign(topic="weather"), dev, quiet_config(tmp_path))


@pytest.mark.parametrize("field, value", [
    ("task_sampling", "random"), ("sampling_temperature", 0), ("sampling_temperature", -1.0),
    ("steps_per_epoch", 0), ("epochs", 0), ("batch_size", 0), ("patience", 0), ("precision", "fp16"),
    ("warmup_ratio", 1.0), ("warmup_ratio", -0.1), ("max_grad_norm", 0.0), ("max_seq_length", 0),
    ("trainable_encoder_layers", -1), ("trainable_encoder_layers", "most"), ("trainable_encoder_layers", True),
    ("length_group_batches", 0), ("encoder_lr", 0.0), ("cached_layer", -1),
])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})
