import copy
import json
import pickle

import pytest
import torch
from torch import nn

from mtt_helpers import (
    SENTIMENT_LABELS,
    TOPIC_LABELS,
    MLPHead,
    MultiTaskConfig,
    MultiTaskSentenceTransformer,
    set_seed,
)

TEXTS = [
    "The striker scored twice in the derby.",
    "My flu jab took five minutes.",
    "The new phone update drains the battery.",
    "Shares fell 4% after the earnings call.",
]

VARIED = [
    "Shares fell 4% after the earnings call.",
    "ok",
    " ".join(["The committee discussed budgets and exams."] * 60),  # > 256 tokens: truncated
    "🎉🎉🎉 #blessed @user https://t.co/xyz",  # few characters, many tokens
    "Internationalization notwithstanding, manufacturers outperformed",  # many characters, few tokens
    "Café crème brûlée — naïve résumé, très bien!",
    "東京の新しいスマートフォンは高すぎる。",
    "A",
    "  leading and trailing spaces  ",
    "The striker scored twice in the final minutes of a thrilling derby at the weekend.",
]
"""Lengths from 1 to over 256 tokens, in an order that is neither character- nor token-sorted."""


def test_mlp_head_layers_and_shapes():
    head = MLPHead(384, 192, 6)
    assert (head.dense.in_features, head.dense.out_features) == (384, 192)
    assert isinstance(head.activation, nn.GELU)
    assert (head.classifier.in_features, head.classifier.out_features) == (192, 6)
    head.eval()
    x = torch.randn(5, 384)
    expected = head.classifier(torch.nn.functional.gelu(head.dense(x)))
    assert torch.allclose(head(x), expected)
    assert head(x).shape == (5, 6)


def test_default_tasks_and_label_order(model):
    assert model.config.tasks == {"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS}
    assert TOPIC_LABELS == ["sports", "health", "tech", "finance", "education", "other"]
    assert SENTIMENT_LABELS == ["negative", "neutral", "positive"]
    assert model.heads["topic"].classifier.out_features == 6
    assert model.heads["sentiment"].classifier.out_features == 3


def test_forward_runs_encoder_once_for_both_heads(model):
    calls = []
    hook = model.encoder.register_forward_hook(lambda *args: calls.append(1))
    try:
        out = model(model.tokenize(TEXTS))
    finally:
        hook.remove()
    assert len(calls) == 1
    assert out["embedding"].shape == (4, 384)
    assert out["topic"].shape == (4, 6)
    assert out["sentiment"].shape == (4, 3)


def test_predict_table(model):
    table = model.predict(TEXTS)
    assert list(table.columns[:3]) == ["sentence", "text_class", "sentiment"]
    assert table["sentence"].tolist() == TEXTS
    assert set(table["text_class"]) <= set(TOPIC_LABELS)
    topic_probs = table[[f"prob_topic_{label}" for label in TOPIC_LABELS]].to_numpy()
    assert abs(topic_probs.sum(axis=1) - 1).max() < 1e-5
    # The label is the argmax of the probabilities.
    assert [TOPIC_LABELS[i] for i in topic_probs.argmax(axis=1)] == table["text_class"].tolist()


def test_predict_order_does_not_depend_on_batching(model):
    one = model.predict_logits(TEXTS, batch_size=1)["topic"]
    all_at_once = model.predict_logits(TEXTS, batch_size=32)["topic"]
    assert torch.allclose(one, all_at_once, atol=1e-5)


def _token_counts(model, texts):
    return [len(ids) for ids in model.encoder.tokenizer(texts, truncation=True, max_length=model.encoder.max_seq_length)["input_ids"]]


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_embed_matches_sentence_transformers_encode(model, encoder, batch_size):
    counts = _token_counts(model, VARIED)
    assert counts != sorted(counts) and counts != sorted(counts, reverse=True)  # the input is not pre-sorted
    assert max(counts) == model.encoder.max_seq_length  # one text is truncated
    ours = model.embed(VARIED, batch_size=batch_size)
    theirs = encoder.encode(VARIED, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True).cpu()
    assert ours.shape == (len(VARIED), 384)
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_batched_outputs_are_restored_to_input_order(model):
    """Each row must belong to the text at the same position: compare with texts embedded alone."""
    batched = model.predict_logits(VARIED, batch_size=3)
    for i, text in enumerate(VARIED):
        alone = model.predict_logits([text], batch_size=1)
        for key in ("embedding", "topic", "sentiment"):
            assert (batched[key][i] - alone[key][0]).abs().max().item() <= 1e-5, (i, key)
    # Rows of different texts differ, so a permutation could not pass the check above.
    assert torch.cdist(batched["embedding"], batched["embedding"]).fill_diagonal_(1).min() > 0.01


def test_batches_are_sorted_by_token_count_not_characters(model):
    counts = _token_counts(model, VARIED)
    by_characters = sorted(range(len(VARIED)), key=lambda i: -len(VARIED[i]))
    by_tokens = sorted(range(len(VARIED)), key=lambda i: -counts[i])
    assert [counts[i] for i in by_characters] != [counts[i] for i in by_tokens]  # the two orders differ here

    widths = []
    hook = model.encoder.register_forward_pre_hook(
        lambda module, args: widths.append(args[0]["attention_mask"].sum(dim=1).tolist())
    )
    try:
        model.embed(VARIED, batch_size=3)
    finally:
        hook.remove()
    assert sorted(c for batch in widths for c in batch) == sorted(counts)  # each text once, unpadded count
    for longer, shorter in zip(widths, widths[1:]):
        assert min(longer) >= max(shorter)  # consecutive batches never interleave lengths
    assert widths == [[counts[i] for i in by_tokens[k : k + 3]] for k in range(0, len(VARIED), 3)]


def test_set_seed_makes_heads_reproducible(encoder):
    set_seed(7)
    a = MultiTaskSentenceTransformer(encoder).heads.state_dict()
    set_seed(7)
    b = MultiTaskSentenceTransformer(encoder).heads.state_dict()
    set_seed(8)
    c = MultiTaskSentenceTransformer(encoder).heads.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["topic.dense.weight"], c["topic.dense.weight"])


@pytest.mark.parametrize("include_encoder", [True, False])
def test_save_load_gives_identical_predictions(model, tmp_path, monkeypatch, include_encoder):
    model.save(tmp_path, include_encoder=include_encoder)
    files = {p.name for p in tmp_path.rglob("*")}
    assert {"config.json", "heads.safetensors"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl", ".pth")) for name in files)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("load must not unpickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = MultiTaskSentenceTransformer.load(tmp_path, device="cpu")
    before = model.predict_logits(TEXTS)
    after = loaded.predict_logits(TEXTS)
    for key in ("embedding", "topic", "sentiment"):
        assert torch.allclose(before[key], after[key], atol=1e-6)
    assert loaded.predict(TEXTS)[["text_class", "sentiment"]].equals(model.predict(TEXTS)[["text_class", "sentiment"]])


def _finetuned_copy(encoder):
    """A model on a copy of ``encoder`` whose attention weights were changed, as fine-tuning would.

    Noise on the query/key/value weights changes which tokens attend to which, so (unlike a
    constant added to every embedding, which LayerNorm removes) the sentence embeddings change.
    The shared session fixture is left untouched.
    """
    tuned = copy.deepcopy(encoder)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in tuned[0].auto_model.encoder.layer:
            for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
                linear.weight.add_(0.05 * torch.randn(linear.weight.shape, generator=generator))
    set_seed(0)
    return MultiTaskSentenceTransformer(tuned)


def test_saved_finetuned_encoder_is_reloaded(encoder, tmp_path):
    pristine_before = encoder[0].auto_model.encoder.layer[0].attention.self.query.weight.detach().clone()
    tuned = _finetuned_copy(encoder)
    tuned.save(tmp_path, include_encoder=True)
    loaded = MultiTaskSentenceTransformer.load(tmp_path, device="cpu")
    assert torch.allclose(tuned.embed(TEXTS), loaded.embed(TEXTS), atol=1e-6)
    # The pristine encoder gives clearly other embeddings, so a load() that ignored encoder/ fails above.
    pristine = MultiTaskSentenceTransformer(encoder).embed(TEXTS)
    assert (pristine - loaded.embed(TEXTS)).abs().max().item() > 0.05
    assert torch.equal(encoder[0].auto_model.encoder.layer[0].attention.self.query.weight, pristine_before)


def test_load_refuses_heads_saved_without_their_finetuned_encoder(encoder, tmp_path):
    tuned = _finetuned_copy(encoder)
    tuned.save(tmp_path, include_encoder=False)  # the fine-tuned encoder is not saved
    with pytest.raises(ValueError, match="other weights than the one the heads were saved with"):
        MultiTaskSentenceTransformer.load(tmp_path, device="cpu")
    # The frozen (pristine) encoder, saved the same way, loads.
    MultiTaskSentenceTransformer(encoder).save(tmp_path, include_encoder=False)
    MultiTaskSentenceTransformer.load(tmp_path, device="cpu")


def test_load_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="Model directory not found"):
        MultiTaskSentenceTransformer.load(tmp_path / "missing")
    model.save(tmp_path, include_encoder=False)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="Unreadable model config"):
        MultiTaskSentenceTransformer.load(tmp_path)
    model.save(tmp_path, include_encoder=False)
    (tmp_path / "heads.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="Head weights"):
        MultiTaskSentenceTransformer.load(tmp_path)
    (tmp_path / "heads.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="heads.safetensors"):
        MultiTaskSentenceTransformer.load(tmp_path)


def test_load_rejects_heads_that_do_not_fit_config(model, tmp_path):
    model.save(tmp_path, include_encoder=False)
    config = json.loads((tmp_path / "config.json").read_text())
    config["tasks"]["sentiment"] = ["negative", "positive"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not fit"):
        MultiTaskSentenceTransformer.load(tmp_path)


def test_config_validation():
    with pytest.raises(ValueError, match="at least one task"):
        MultiTaskConfig(tasks={})
    with pytest.raises(ValueError, match="at least two labels"):
        MultiTaskConfig(tasks={"topic": ["sports"]})
    with pytest.raises(ValueError, match="duplicate"):
        MultiTaskConfig(tasks={"topic": ["a", "a"]})


def test_predict_rejects_bad_input(model):
    with pytest.raises(ValueError, match="empty list"):
        model.predict([])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(TEXTS, batch_size=0)
