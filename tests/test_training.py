"""The training loop: strategies, the masked loss, the optimiser's groups, precision, caches, batching, bad input."""

import copy
import random
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import mtt_helpers.precision as precision_module
import mtt_helpers.training as training
from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, set_seed
from mtt_helpers.data import IGNORE_INDEX, load_bundled, multitask_frame, stratified_sample
from mtt_helpers.embedding_cache import EmbeddingCache
from mtt_helpers.model import pad_token_vectors
from mtt_helpers.precision import resolve_precision
from mtt_helpers.training import (
    TrainConfig, batch_indices, evaluate, length_grouped_order, masked_loss, padding_counts, parameter_groups,
    sampling_shares, selection_score, task_metrics, train, train_sequential,
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


def fresh(encoder, **config):
    set_seed(0)
    # A copy: fine-tuning must not change the session-wide encoder other test files use.
    return MultiTaskSentenceTransformer(copy.deepcopy(encoder), MultiTaskConfig(**config))


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def unchanged(before, module):
    return all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def quiet(**kwargs):
    return TrainConfig(show_progress_bar=False, **kwargs)


def no_dropout(model):
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def top_layer(model):
    return model.transformer.encoder.layer[5]


# ------------------------------------------------------------ strategies
def test_frozen_training_changes_only_heads_learns_and_keeps_best_epoch(encoder, frames):
    _, both, dev = frames
    model, cache = fresh(encoder), EmbeddingCache()
    encoder_before = snapshot(model.encoder)
    dev_vectors = cache.embeddings(model, dev["text"].tolist(), "fp32")  # what train() scores with, from the cache
    before = evaluate(model, dev, embeddings=dev_vectors)
    result = train(model, both, dev, quiet(epochs=15, patience=15, precision="fp32"), cache)
    after = evaluate(model, dev, embeddings=dev_vectors)
    assert unchanged(encoder_before, model.encoder)
    assert after["topic"]["macro_f1"] > max(before["topic"]["macro_f1"], 0.5)
    assert len(result.history) == 15
    best = result.history["validation_score"].max()
    assert result.history.loc[result.best_epoch - 1, "validation_score"] == best
    # The kept weights are the best epoch's: re-scored on the same embeddings they give the best score.
    assert selection_score(evaluate(model, dev, embeddings=dev_vectors)) == pytest.approx(best, abs=1e-9)
    # The held-out loss is the mean cross-entropy over each task's labelled rows, recorded per epoch.
    assert result.history["validation_topic_loss"].iloc[0] > result.history["validation_topic_loss"].min()
    rows = dev["sentiment"].notna().to_numpy()
    with torch.no_grad():
        logits = model.heads["sentiment"](dev_vectors[torch.tensor(rows)])
    targets = torch.tensor([model.config.tasks["sentiment"].index(label) for label in dev["sentiment"][rows]])
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert evaluate(model, dev, embeddings=dev_vectors)["sentiment"]["loss"] == pytest.approx(expected, abs=1e-5)


def test_without_held_out_rows_every_epoch_runs_and_last_weights_stay(encoder, frames):
    _, both, _ = frames
    model = fresh(encoder)
    result = train(model, both, None, quiet(epochs=4, patience=1))
    assert len(result.history) == 4 and result.best_epoch == 4 and result.selection_split is None
    assert "validation_score" not in result.history.columns
    longer = fresh(encoder)
    train(longer, both, None, quiet(epochs=5))
    assert not unchanged(snapshot(model.heads), longer.heads)  # one epoch more: other weights, nothing restored
    shorter = fresh(encoder)
    train(shorter, both, None, quiet(epochs=4))
    assert unchanged(snapshot(model.heads), shorter.heads)


def test_early_stopping_stops_after_patience_and_restores_the_best_epoch(encoder, frames, monkeypatch):
    _, both, dev = frames
    model = fresh(encoder)
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9, 0.9])  # best at epoch 2, then two worse epochs
    states = []

    def scripted_score(metrics):
        states.append(snapshot(model.heads))
        return next(scores)

    monkeypatch.setattr(training, "selection_score", scripted_score)
    result = train(model, both, dev, quiet(epochs=6, patience=2))
    assert len(result.history) == 4 and result.best_epoch == 2
    assert unchanged(states[1], model.heads) and not unchanged(states[3], model.heads)


def test_training_one_task_leaves_the_other_head_alone(encoder, frames):
    masked, _, dev = frames
    topic_rows = masked.loc[masked["topic"].notna()]  # no sentiment label at all
    model = fresh(encoder)
    topic_before, sentiment_before = snapshot(model.heads["topic"]), snapshot(model.heads["sentiment"])
    train(model, topic_rows, dev, quiet(epochs=2, tasks=["topic"]))
    assert unchanged(sentiment_before, model.heads["sentiment"]) and not unchanged(topic_before, model.heads["topic"])


def test_partial_finetuning_touches_only_top_layers_and_gives_every_flag_back(encoder, frames):
    masked, _, dev = frames
    model = fresh(encoder)
    model.heads["topic"].requires_grad_(False)  # a state of the caller's, to be found again afterwards
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    layers = model.transformer.encoder.layer
    lower, top = snapshot(layers[3]), snapshot(layers[5])
    embeddings_before = snapshot(model.transformer.embeddings)
    train(model, masked, dev, quiet(epochs=1, trainable_encoder_layers=2))
    assert unchanged(lower, layers[3]) and unchanged(embeddings_before, model.transformer.embeddings)
    assert not unchanged(top, layers[5])
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert not any(module.training for module in model.modules())  # built in eval mode, given back in eval mode


def test_training_one_model_leaves_another_that_shares_its_encoder_untouched(encoder, frames):
    """A frozen-encoder run trains heads only: a second model built on the same encoder object predicts,
    tokenizes and trains exactly as before, its modes and flags untouched."""
    masked, _, dev = frames
    shared = copy.deepcopy(encoder)
    set_seed(0)
    other = MultiTaskSentenceTransformer(shared)
    set_seed(1)
    trained = MultiTaskSentenceTransformer(shared, MultiTaskConfig(max_seq_length=16))
    other.train()  # the other model is in the middle of something of its own
    texts = dev["text"].tolist()[:12]
    before = other.predict_logits(texts)
    flags = [p.requires_grad for p in shared.parameters()]
    modes = [m.training for m in other.modules()]
    limit = shared.max_seq_length
    train(trained, masked, dev, quiet(epochs=2))
    assert [m.training for m in other.modules()] == modes
    assert [p.requires_grad for p in shared.parameters()] == flags and shared.max_seq_length == limit
    after = other.predict_logits(texts)
    assert all(torch.equal(before[key], after[key]) for key in before)


def test_gradient_cosine_of_two_identical_tasks_is_one(encoder, frames):
    _, both, _ = frames
    # Two heads with the same labels, the same initial weights and no dropout: their gradients on the
    # encoder are identical, so every recorded cosine is 1.
    topic_labels = list(MultiTaskConfig().tasks["topic"])
    model = fresh(encoder, tasks={"topic": topic_labels, "topic_copy": topic_labels}, dropout=0.0)
    model.heads["topic_copy"].load_state_dict(model.heads["topic"].state_dict())
    frame = both.assign(topic_copy=both["topic"])
    result = train(model, frame, None, quiet(epochs=1, steps_per_epoch=2, batch_size=8, trainable_encoder_layers=1,
                                             track_gradient_conflict=True))
    assert result.gradient_cosines == pytest.approx([1.0, 1.0], abs=1e-3)


def test_sequential_training_leaves_stage_one_untouched_by_stage_two(encoder, frames):
    masked, _, dev = frames
    first = quiet(epochs=1, tasks=["topic"], trainable_encoder_layers=1)
    second = quiet(epochs=3, tasks=["sentiment"])
    stage_one_only = fresh(encoder)
    train(stage_one_only, masked.loc[masked["topic"].notna()], dev, first)
    model = fresh(encoder)
    sentiment_initial = snapshot(model.heads["sentiment"])
    train_sequential(model, masked, dev, first, second)
    # The same first stage, then a second that changes neither the encoder nor the topic head.
    assert unchanged(snapshot(stage_one_only.encoder), model.encoder)
    assert unchanged(snapshot(stage_one_only.heads["topic"]), model.heads["topic"])
    assert not unchanged(sentiment_initial, model.heads["sentiment"])
    with pytest.raises(ValueError, match="heads only"):
        train_sequential(model, masked, dev, first, quiet(tasks=["sentiment"], trainable_encoder_layers=1))


def test_training_is_deterministic(encoder, frames):
    _, both, dev = frames
    runs = []
    for _ in range(2):
        model = fresh(encoder)
        history = train(model, both, dev, quiet(epochs=3)).history
        runs.append((history.drop(columns="seconds"), snapshot(model.heads)))
    pd.testing.assert_frame_equal(runs[0][0], runs[1][0])
    assert all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


def test_train_leaves_the_callers_random_state_alone(encoder, frames):
    """train() seeds generators of its own (dropout masks included): the caller's global torch, NumPy and
    Python generators are where they were, and the run does not depend on them."""
    _, both, _ = frames
    heads = []
    for draws in (0, 7):
        model = fresh(encoder)
        torch.rand(draws), np.random.rand(draws), [random.random() for _ in range(draws)]
        before = torch.get_rng_state(), np.random.get_state(), random.getstate()
        train(model, both, None, quiet(epochs=2))
        assert torch.equal(before[0], torch.get_rng_state()) and before[2] == random.getstate()
        assert all(np.array_equal(a, b) for a, b in zip(before[1], np.random.get_state()))
        heads.append(snapshot(model.heads))
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])


def test_whole_encoder_path_trains_the_embeddings_too_and_pads_little(encoder, frames):
    _, both, _ = frames
    model, cache = fresh(encoder, max_seq_length=12), EmbeddingCache()
    embeddings_before = snapshot(model.transformer.embeddings)
    result = train(model, both, None, quiet(trainable_encoder_layers="all", epochs=2, steps_per_epoch=3, batch_size=8),
                   cache)
    assert not unchanged(embeddings_before, model.transformer.embeddings)  # "all" includes the embedding layer
    assert not cache.hidden and not cache.stores  # nothing frozen, so nothing cached
    assert result.padded_token_ratio is not None and 1.0 <= result.padded_token_ratio < 1.2
    assert result.precision == resolve_precision("auto") and result.rows_seen == [24, 24]


def test_cached_lower_layers_train_exactly_like_plain_finetuning(encoder, frames):
    masked, _, _ = frames
    initial = snapshot(fresh(encoder))
    trained = {}
    for cache in (True, False):
        model = no_dropout(fresh(encoder))
        train(model, masked, None, quiet(epochs=1, steps_per_epoch=3, batch_size=8, trainable_encoder_layers=2,
                                         cache_lower_layers=cache, precision="fp32"))
        trained[cache] = model
    cached, plain = snapshot(trained[True]), snapshot(trained[False])
    update = {name: (cached[name] - before).abs().max().item() for name, before in initial.items()}
    assert update["encoder.0.model.encoder.layer.5.output.dense.weight"] > 1e-5  # the top layers really trained
    assert update["encoder.0.model.encoder.layer.3.output.dense.weight"] == 0
    # Both paths end at the same weights up to float rounding: under 5% of the largest update of the
    # encoder and of the heads (Adam amplifies rounding where a gradient is near its epsilon).
    for part in ("encoder.", "heads."):
        names = [name for name in cached if name.startswith(part)]
        difference = max((cached[name] - plain[name]).abs().max().item() for name in names)
        assert difference <= 0.05 * max(update[name] for name in names), part


def test_embeddings_after_top_layer_finetuning_reuse_lower_layers(encoder, frames, monkeypatch):
    masked, _, dev = frames
    model, cache = fresh(encoder), EmbeddingCache()
    train(model, masked, dev, quiet(epochs=1, trainable_encoder_layers=2, precision="fp32"), cache)
    texts = dev["text"].tolist()[:10]
    expected = model.embed(texts)
    monkeypatch.setattr(model, "embed", lambda *a, **k: pytest.fail("the lower layers' outputs are cached"))
    assert (cache.embeddings(model, texts, "fp32") - expected).abs().max().item() <= 1e-5


# ------------------------------------------------------------ the masked loss
def test_unlabelled_rows_in_a_mixed_batch_add_no_gradient(encoder):
    model = fresh(encoder).eval()
    embeddings = torch.randn(8, 384)
    topic = torch.tensor([0, 3, 1, 2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX])

    def topic_head_gradient(vectors, targets):
        model.zero_grad()
        loss, losses = masked_loss(model.classify(vectors), {"topic": targets, "sentiment": torch.full_like(targets, IGNORE_INDEX)})
        assert list(losses) == ["topic"]  # a task with no label in the batch has no loss at all
        loss.backward()
        return [p.grad.clone() for p in model.heads["topic"].parameters()]

    mixed = topic_head_gradient(embeddings, topic)
    labelled_only = topic_head_gradient(embeddings[:4], topic[:4])
    other_unlabelled = topic_head_gradient(torch.cat([embeddings[:4], 5 * torch.randn(4, 384)]), topic)
    for a, b, c in zip(mixed, labelled_only, other_unlabelled):
        assert torch.allclose(a, b, atol=1e-7) and torch.allclose(a, c, atol=1e-7)


def test_the_two_loss_weightings_weigh_tasks_and_examples():
    """One headline and three tweets: per task, the headline's loss weighs as much as the three tweets
    together; per example, each of the four counts once."""
    logits = {"topic": torch.randn(4, 6), "sentiment": torch.randn(4, 3)}
    targets = {"topic": torch.tensor([2, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX]),
               "sentiment": torch.tensor([IGNORE_INDEX, 0, 1, 2])}
    row_loss = {task: torch.nn.functional.cross_entropy(logits[task], targets[task], ignore_index=IGNORE_INDEX,
                                                        reduction="none") for task in logits}
    topic, sentiment = row_loss["topic"][0], row_loss["sentiment"][1:]
    task_mean, per_task = masked_loss(logits, targets, "task_mean")
    example_mean, _ = masked_loss(logits, targets, "example_mean")
    assert task_mean.item() == pytest.approx((topic + sentiment.mean()).item(), abs=1e-6)
    assert example_mean.item() == pytest.approx(((topic + sentiment.sum()) / 4).item(), abs=1e-6)
    assert per_task["sentiment"].item() == pytest.approx(sentiment.mean().item(), abs=1e-6)
    weighted, _ = masked_loss(logits, targets, "task_mean", {"topic": 0.0})
    assert weighted.item() == pytest.approx(sentiment.mean().item(), abs=1e-6)
    assert masked_loss(logits, {task: torch.full((4,), IGNORE_INDEX) for task in logits})[0] is None


# ------------------------------------------------------------ the optimiser
def test_each_part_learns_at_its_own_rate_and_only_matrices_decay(encoder, frames):
    """Adam's first step moves every weight by about its learning rate; AdamW then shrinks each decayed
    weight by lr x weight_decay of itself. With a weight decay of 100, a decayed LayerNorm weight (about 1)
    would move by 100 x its learning rate: it must move by its learning rate only."""
    _, both, _ = frames
    model = no_dropout(fresh(encoder))
    before = snapshot(model)
    train(model, both, None, quiet(trainable_encoder_layers="all", epochs=1, steps_per_epoch=1, batch_size=8,
                                   head_lr=1e-3, encoder_lr=5e-5, weight_decay=100.0, warmup_ratio=0.0,
                                   max_grad_norm=None, precision="fp32"))
    after = snapshot(model)
    moved = {name: (after[name] - before[name]).abs().max().item() for name in before if after[name].is_floating_point()}
    head_matrix, head_bias = moved["heads.topic.dense.weight"], moved["heads.topic.dense.bias"]
    norm_weight = moved["encoder.0.model.encoder.layer.2.attention.output.LayerNorm.weight"]
    encoder_bias = moved["encoder.0.model.encoder.layer.2.attention.self.query.bias"]
    encoder_matrix = moved["encoder.0.model.encoder.layer.2.attention.self.query.weight"]
    assert 0.5e-3 < head_bias <= 1.01e-3  # Adam's step at the head's rate, no decay
    assert 2.5e-5 < encoder_bias <= 5.05e-5 and norm_weight <= 5.05e-5  # the encoder's rate, no decay
    assert encoder_matrix > 1e-3 and head_matrix > 1.5e-3  # matrices shrink: decay 100 x lr of themselves


def test_parameter_groups_name_each_parts_rate_and_decay(encoder):
    model = fresh(encoder)
    training.set_trainable(model, 2, ["topic", "sentiment"])
    optimizer = torch.optim.AdamW(parameter_groups(model, ["topic", "sentiment"], TrainConfig(head_lr=2e-3, encoder_lr=3e-5, weight_decay=0.05)))
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert {name: (g["lr"], g["weight_decay"]) for name, g in groups.items()} == {
        "heads: weight matrices": (2e-3, 0.05), "heads: biases and LayerNorm": (2e-3, 0.0),
        "encoder: weight matrices": (3e-5, 0.05), "encoder: biases and LayerNorm": (3e-5, 0.0)}
    assert all(p.dim() >= 2 for p in groups["encoder: weight matrices"]["params"])
    assert all(p.dim() == 1 for p in groups["encoder: biases and LayerNorm"]["params"])
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == trained  # every trained weight, once


# ------------------------------------------------------------ labels and data
def test_label_order_comes_from_the_model_config(encoder, frames):
    _, both, _ = frames
    reversed_tasks = {task: labels[::-1] for task, labels in MultiTaskConfig().tasks.items()}
    model = fresh(encoder, tasks=reversed_tasks)
    train(model, both, None, quiet(epochs=15))
    predicted = model.predict(both["text"].tolist())
    assert (predicted["sentiment"] == both["sentiment"]).mean() > 0.8  # swapped names would score near 0.3
    assert (predicted["text_class"] == both["topic"]).mean() > 0.8


def test_nan_labels_from_concat_are_unlabelled(encoder, frames):
    masked, _, dev = frames
    topic_part = masked[masked["topic"].notna()][["text", "topic"]]
    sentiment_part = masked[masked["sentiment"].notna()][["text", "sentiment"]]
    concatenated = pd.concat([topic_part, sentiment_part], ignore_index=True)  # missing labels are NaN
    concatenated.loc[0, "sentiment"] = pd.NA
    runs = []
    for frame in (concatenated, masked.drop(columns="source")):
        model = fresh(encoder)
        train(model, frame, dev, quiet(epochs=2))
        runs.append(snapshot(model.heads))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_cached_layer_path_uses_the_encoders_own_pooling(encoder, frames):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Pooling

    _, both, dev = frames
    cls_encoder = SentenceTransformer(modules=[copy.deepcopy(encoder[0]), Pooling(384, pooling_mode="cls")], device="cpu")
    set_seed(0)
    model = MultiTaskSentenceTransformer(cls_encoder)
    texts = ["x", "A much longer sentence about the stock market falling sharply today.", "ok then"]
    states, mask = pad_token_vectors(EmbeddingCache().hidden_states(model, texts, 4, "fp32"))
    with torch.no_grad():
        assert (model.encode_from_layer(states, mask, 4) - model.embed(texts)).abs().max().item() <= 1e-5
    # Training through the cache scores the held-out rows exactly as the model's own predict path does.
    result = train(model, both, dev, quiet(epochs=1, trainable_encoder_layers=2, precision="fp32"))
    assert selection_score(evaluate(model, dev)) == pytest.approx(result.history["validation_score"].iloc[0], abs=1e-9)


@pytest.mark.parametrize("layer", [0, 3, 5])
def test_top_layers_on_cached_states_match_full_encoder(encoder, layer):
    model = fresh(encoder).eval()  # no dropout
    texts = ["x", "A much longer sentence about the stock market falling sharply today.", "ok then"]
    hidden = EmbeddingCache().hidden_states(model, texts, layer, "fp32")
    assert [h.shape[1] for h in hidden] == [384] * 3
    states, mask = pad_token_vectors(hidden)
    with torch.no_grad():
        ours = model.encode_from_layer(states, mask, layer)
    assert (ours - model.embed(texts)).abs().max().item() <= 1e-5


# ------------------------------------------------------------ precision
def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ())
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(precision_module, "cpu_bf16_flags", lambda: ("amx_bf16",))
    assert resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)  # emulated on a T4 too
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # T4: fp16 tensor cores only
    assert resolve_precision("auto", "cuda") == "fp16"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100: native bf16
    assert resolve_precision("auto", "cuda") == "bf16"
    assert resolve_precision("fp32", "cuda") == "fp32" and resolve_precision("fp16", "cpu") == "fp16"
    assert resolve_precision("auto", "meta") == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("int8")


def test_fp16_steps_scale_the_loss_and_skip_a_step_whose_gradients_overflow(encoder, frames):
    """fp16 trains with a loss scaler (torch.amp.GradScaler, here on the CPU): a step whose gradients hold
    an infinity is skipped, and training goes on with finite weights. The same infinity in an fp32 run,
    which has no scaler, is stepped into the weights."""
    _, both, _ = frames
    config = {"trainable_encoder_layers": 1, "epochs": 2, "batch_size": 8, "max_grad_norm": None}
    weights = {}
    for precision in ("fp16", "fp32"):
        model = fresh(encoder)
        weights[precision] = top_layer(model).output.dense.weight
        spoiled = []
        weights[precision].register_hook(lambda grad: grad if spoiled else (spoiled.append(1) or grad * float("inf")))
        if precision == "fp16":
            result = train(model, both.iloc[:16], None, quiet(precision=precision, **config))
            assert result.precision == "fp16" and len(result.history) == 2
        else:
            with pytest.raises(FloatingPointError, match="The loss is nan at epoch 1, step 2"):
                train(model, both.iloc[:16], None, quiet(precision=precision, **config))
    assert torch.isfinite(weights["fp16"]).all() and not torch.isfinite(weights["fp32"]).all()


def test_bf16_training_steps_lower_the_loss_and_keep_fp32_weights(encoder, frames):
    """Whole-encoder steps under bf16 autocast: the backward pass runs through bf16 activations, the loss
    falls, every weight moves, and every parameter stays fp32."""
    _, both, _ = frames
    model = fresh(encoder, max_seq_length=16)
    before = snapshot(model)
    activation_dtypes = set()
    hook = top_layer(model).output.dense.register_forward_hook(
        lambda module, args, output: activation_dtypes.add(output.dtype) if torch.is_grad_enabled() else None)
    try:
        result = train(model, both.iloc[:16], None, quiet(trainable_encoder_layers="all", precision="bf16", epochs=4,
                                                          batch_size=8, head_lr=1e-2, encoder_lr=1e-4, warmup_ratio=0.0))
    finally:
        hook.remove()
    assert result.precision == "bf16" and activation_dtypes == {torch.bfloat16}
    losses = result.history["train_loss_topic"] + result.history["train_loss_sentiment"]
    assert losses.iloc[-1] < 0.9 * losses.iloc[0], losses.tolist()
    after = snapshot(model)
    for name in ("encoder.0.model.embeddings.word_embeddings.weight", "encoder.0.model.encoder.layer.5.output.dense.weight",
                 "heads.topic.classifier.weight"):
        assert not torch.equal(before[name], after[name]), name
    assert {p.dtype for p in model.parameters()} == {torch.float32}


# ------------------------------------------------------------ caches
def test_embedding_cache_hits_memory_and_disk(encoder, tmp_path, monkeypatch):
    model = fresh(encoder)
    texts = ["a cached sentence", "another one", "a cached sentence"]
    cache = EmbeddingCache.on_disk(tmp_path)
    first = cache.embeddings(model, texts)
    assert torch.equal(first[0], first[2])
    assert len(list(tmp_path.glob("*/part-*.safetensors"))) == 1
    monkeypatch.setattr(model, "embed", lambda *a, **k: pytest.fail("should have been cached"))
    assert torch.equal(cache.embeddings(model, texts[:2]), first[:2])
    assert torch.equal(EmbeddingCache.on_disk(tmp_path).embeddings(model, texts), first)  # a new process: from disk
    cache.clear()
    assert not cache.stores


def test_the_default_on_disk_cache_lives_in_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert EmbeddingCache.on_disk().directory == tmp_path / "xdg" / "mtt_helpers" / "embeddings"
    assert EmbeddingCache().directory is None  # in memory unless asked


def test_disk_cache_survives_concurrent_writers_and_damaged_files(encoder, tmp_path, monkeypatch):
    model = fresh(encoder)
    a = EmbeddingCache.on_disk(tmp_path).embeddings(model, ["text of process a"])
    b = EmbeddingCache.on_disk(tmp_path).embeddings(model, ["text of process b"])
    (folder,) = tmp_path.iterdir()
    (folder / "part-damaged.safetensors").write_bytes(b"\x00\x01 not a safetensors file")
    real_embed = model.embed
    monkeypatch.setattr(model, "embed", lambda *a, **k: pytest.fail("both entries must be on disk"))
    with pytest.warns(UserWarning, match="unreadable"):
        both = EmbeddingCache.on_disk(tmp_path).embeddings(model, ["text of process a", "text of process b"])
    assert torch.equal(both, torch.cat([a, b]))
    assert not (folder / "part-damaged.safetensors").exists()
    monkeypatch.setattr(model, "embed", real_embed)
    parts_before = sorted(folder.iterdir())

    def interrupted_save(tensors, path):
        open(path, "wb").write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr("mtt_helpers.embedding_cache.save_file", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        EmbeddingCache.on_disk(tmp_path).embeddings(model, ["a text being written when the user pressed Ctrl-C"])
    assert sorted(folder.iterdir()) == parts_before  # an interrupted write publishes nothing, leaves nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        EmbeddingCache.on_disk(tmp_path).embeddings(model, ["text of process a"])


def test_in_memory_cache_is_bounded(encoder):
    cache = EmbeddingCache(max_embedding_states=2)
    for length in (16, 32, 64):  # three encoder states (the token limit is part of the key)
        cache.embeddings(fresh(encoder, max_seq_length=length), ["a text"])
    assert len(cache.stores) == 2


def test_cache_key_changes_when_encoder_changes(encoder):
    model, cache = fresh(encoder), EmbeddingCache()
    before = cache.embeddings(model, ["the same text"])
    changed = copy.deepcopy(model)
    with torch.no_grad():  # (a constant bias shift would vanish in the LayerNorm that follows)
        top_layer(changed).output.dense.weight.mul_(1.5)
    assert not torch.allclose(before, cache.embeddings(changed, ["the same text"]))


# ------------------------------------------------------------ batching and task sampling
def test_batch_indices_sampling_rules():
    sources = np.array(["big"] * 90 + ["small"] * 10)
    rng = np.random.default_rng(0)
    proportional = batch_indices(sources, TrainConfig(batch_size=10), rng)
    assert sorted(np.concatenate(proportional).tolist()) == list(range(100))
    round_robin = batch_indices(sources, TrainConfig(batch_size=5, task_sampling="round_robin", steps_per_epoch=6), rng)
    assert [set(sources[b]) for b in round_robin] == [{"big"}, {"small"}] * 3
    for temperature in (2.0, 1000.0):
        drawn = batch_indices(sources, TrainConfig(batch_size=1, task_sampling="temperature",
                                                   sampling_temperature=temperature, steps_per_epoch=4000), rng)
        expected = sampling_shares({"big": 90, "small": 10}, "temperature", temperature)["small"]
        assert np.mean([sources[b[0]] == "small" for b in drawn]) == pytest.approx(expected, abs=0.03)


def test_sampling_shares_follow_the_temperature_rule():
    sizes = {"headlines": 8490, "tweets": 47306}
    assert sampling_shares(sizes, "proportional")["headlines"] == pytest.approx(8490 / 55796)
    assert sampling_shares(sizes, "temperature", 2.0)["headlines"] == pytest.approx(8490 ** 0.5 / (8490 ** 0.5 + 47306 ** 0.5))
    assert sampling_shares(sizes, "round_robin") == {"headlines": 0.5, "tweets": 0.5}


@pytest.mark.parametrize("sampling", ["proportional", "round_robin"])
def test_length_grouping_pads_less_keeps_every_row_and_is_seeded(sampling):
    counts = np.random.default_rng(1).integers(5, 120, size=640)
    sources = np.array(["a", "b"] * 320)

    def epoch(grouping, seed):
        return batch_indices(sources, TrainConfig(batch_size=16, task_sampling=sampling, length_grouping=grouping),
                             np.random.default_rng(seed), counts)

    def ratio(batches):
        padded, real = padding_counts(batches, counts)
        return padded / real

    grouped, plain = epoch(True, 0), epoch(False, 0)
    if sampling == "proportional":
        assert sorted(np.concatenate(grouped).tolist()) == list(range(640))
    else:
        assert [set(sources[b]) for b in grouped[:4]] == [{"a"}, {"b"}, {"a"}, {"b"}]
    assert ratio(grouped) < 1.1 < 1.5 < ratio(plain)
    assert all(np.array_equal(x, y) for x, y in zip(grouped, epoch(True, 0)))
    assert not all(np.array_equal(x, y) for x, y in zip(grouped, epoch(True, 1)))
    assert not np.all(np.diff([counts[b].mean() for b in grouped[:20]]) >= 0)  # batches in random order


def test_length_grouped_order_is_a_permutation():
    rows = np.random.default_rng(0).permutation(100)
    order = length_grouped_order(rows, np.arange(100) % 7, 8, np.random.default_rng(0), chunk_batches=3)
    assert sorted(order.tolist()) == list(range(100))


def test_task_metrics_match_definitions():
    metrics = task_metrics(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert metrics["accuracy"] == 0.75
    assert metrics["macro_recall"] == pytest.approx((0.5 + 1.0) / 2)


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize("bad_text", [float("nan"), None, 42, "   "])
def test_train_names_the_row_of_a_text_that_is_not_a_string(encoder, frames, bad_text):
    masked, _, dev = frames
    frame = masked.assign(text=masked["text"].astype(object))
    frame.loc[frame.index[3], "text"] = bad_text
    model = fresh(encoder)
    heads_before = snapshot(model.heads)
    with pytest.raises(ValueError, match=r"train_frame has 1 empty or non-string text\(s\): row 3 \(index 3\)"):
        train(model, frame, dev, quiet(epochs=1))
    assert unchanged(heads_before, model.heads)


def test_a_task_without_labelled_rows_is_refused(encoder, frames):
    masked, _, _ = frames
    topic_only = masked.assign(sentiment=None)
    model = fresh(encoder)
    with pytest.raises(ValueError, match=r"no labelled row for task\(s\) \['sentiment'\]"):
        train(model, topic_only, None, quiet(epochs=1))
    train(model, topic_only, None, quiet(epochs=1, tasks=["topic"]))  # asked for topic only: fine


def test_a_nan_loss_stops_training_before_the_step(encoder, frames):
    masked, _, dev = frames
    model = fresh(encoder)
    with torch.no_grad():
        model.heads["sentiment"].classifier.bias[0] = float("nan")
    topic_before = snapshot(model.heads["topic"])
    with pytest.raises(FloatingPointError, match=r"The loss is nan at epoch 1, step 1 of \d+"):
        train(model, masked, dev, quiet(epochs=2))
    assert unchanged(topic_before, model.heads["topic"])  # the weights are those before that step


def test_the_held_out_split_names_the_history_and_the_rows_are_counted(encoder, frames):
    masked, _, dev = frames
    result = train(fresh(encoder), masked, dev, quiet(epochs=1), selection_split="validation")
    assert result.selection_split == "validation" and "validation_score" in result.history
    assert result.rows == {"train": {"topic": 36, "sentiment": 36}, "validation": {"topic": 90, "sentiment": 90}}
    assert result.processes == 1 and result.rows_seen == [96]  # 3 batches of 32: the last one tops up from the next shuffle


def test_train_rejects_bad_input(encoder, frames):
    masked, _, dev = frames
    model = fresh(encoder)
    with pytest.raises(ValueError, match="not both a model head"):
        train(model, masked, dev, quiet(tasks=["mood"]))
    with pytest.raises(ValueError, match="no rows"):
        train(model, masked.iloc[:0], dev, quiet())
    with pytest.raises(ValueError, match="cannot unfreeze 7"):
        train(model, masked, dev, quiet(trainable_encoder_layers=7))
    with pytest.raises(ValueError, match="are not topic labels"):
        train(model, masked.assign(topic="weather"), dev, quiet())


@pytest.mark.parametrize("field, value", [
    ("task_sampling", "random"), ("sampling_temperature", 0), ("sampling_temperature", -1.0),
    ("steps_per_epoch", 0), ("epochs", 0), ("batch_size", 0), ("patience", 0), ("precision", "int8"),
    ("warmup_ratio", 1.0), ("warmup_ratio", -0.1), ("max_grad_norm", 0.0), ("loss_weighting", "sum"),
    ("trainable_encoder_layers", -1), ("trainable_encoder_layers", "most"), ("trainable_encoder_layers", True),
    ("length_group_batches", 0), ("encoder_lr", 0.0),
])
def test_train_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_training_args_travel_with_the_model(encoder, tmp_path):
    from mtt_helpers.training import read_training_args

    config = TrainConfig(epochs=3, head_lr=2e-3, task_weights={"topic": 0.5}, loss_weighting="example_mean")
    fresh(encoder).save(tmp_path / "model", include_encoder=False, training_args=config, training_data={"seed": 1})
    assert read_training_args(tmp_path / "model") == (config, {"seed": 1})
