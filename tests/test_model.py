import copy
import json
import os
import pickle
import stat
import warnings

import pytest
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.models import Dense, Pooling
from torch import nn

from mtt_helpers import (
    SENTIMENT_LABELS,
    TOPIC_LABELS,
    MLPHead,
    MultiTaskConfig,
    MultiTaskSentenceTransformer,
    quiet,
    set_seed,
)
from mtt_core.files import write_manifest
from mtt_core.predictions import InputWarning, token_counts, untruncated_lengths

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


def full_length(encoder):
    """The model at the encoder's own token limit (256), as ``SentenceTransformer.encode`` runs."""
    set_seed(0)
    return MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=None))


def test_mlp_head_layers_and_shapes():
    head = MLPHead(384, 192, 6, dropout=0.5)
    assert (head.dense.in_features, head.dense.out_features) == (384, 192)
    assert isinstance(head.activation, nn.GELU)
    assert (head.classifier.in_features, head.classifier.out_features) == (192, 6)
    x = torch.randn(5, 384)
    head.train()
    assert not torch.equal(head(x), head(x))  # dropout is active in training mode ...
    head.eval()
    assert torch.equal(head(x), head(x)) and head(x).shape == (5, 6)  # ... and off in eval mode
    # Two layers with a non-linearity between them: not an affine map of its input.
    assert (head(x[:1] + x[1:2]) - head(x[:1]) - head(x[1:2]) + head(torch.zeros(1, 384))).abs().max() > 1e-3


def test_forward_is_the_sentence_transformers_embedding_then_each_head(model, encoder):
    """The embedding is sentence-transformers' own ``encode`` output, and each task's logits are its
    head applied to that embedding: no other step sits between them."""
    assert model.max_seq_length == 128 and encoder.max_seq_length == 256  # TEXTS are far shorter than either
    with torch.no_grad():
        out = model(model.tokenize(TEXTS))
        theirs = encoder.encode(TEXTS, convert_to_tensor=True, normalize_embeddings=True).cpu()
        assert (out["embedding"] - theirs).abs().max().item() <= 1e-5
        for task in ("topic", "sentiment"):
            assert (out[task] - model.heads[task](theirs)).abs().max().item() <= 1e-5, task
    assert set(out) == {"embedding", "topic", "sentiment"}


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
    return [len(ids) for ids in model.encoder.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]]


@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_embed_matches_sentence_transformers_encode(encoder, batch_size):
    model = full_length(encoder)
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


@pytest.mark.parametrize("limit", [None, 12])
def test_token_counts_are_the_tokens_the_model_runs(encoder, limit):
    """The one token count (batching, the truncation warning, training's length grouping) equals the
    real tokens of the model's own tokenize: special tokens included, cut at the model's limit."""
    model = MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=limit))
    expected = model.tokenize(VARIED)["attention_mask"].sum(dim=1).tolist()
    counts, truncated = token_counts(model.encoder.tokenizer, VARIED, model.max_seq_length)
    assert counts == expected
    assert counts[VARIED.index("ok")] == 3  # [CLS] ok [SEP]
    full = untruncated_lengths(model.encoder.tokenizer, VARIED)
    assert truncated == sum(n > (limit or 256) for n in full) == (1 if limit is None else 4)


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
    MultiTaskSentenceTransformer(encoder).save(tmp_path, include_encoder=False, overwrite=True)
    MultiTaskSentenceTransformer.load(tmp_path, device="cpu")


def test_load_errors(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="Model directory not found"):
        MultiTaskSentenceTransformer.load(tmp_path / "missing")
    model.save(tmp_path, include_encoder=False)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json' has sha256 \w+, not the \w+ it was written with"):
        MultiTaskSentenceTransformer.load(tmp_path)
    model.save(tmp_path, include_encoder=False, overwrite=True)
    (tmp_path / "heads.safetensors").write_bytes(b"garbage")
    write_manifest(tmp_path, "model")  # digests that agree: the file itself is then refused
    with pytest.raises(ValueError, match="Head weights"):
        MultiTaskSentenceTransformer.load(tmp_path)
    (tmp_path / "heads.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="heads.safetensors"):
        MultiTaskSentenceTransformer.load(tmp_path)


def test_load_rejects_heads_that_do_not_fit_config(model, tmp_path):
    """Past the digests (a folder whose manifest was rewritten to match): the config must still fit the weights."""
    model.save(tmp_path, include_encoder=False)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_dim": 96}))
    write_manifest(tmp_path, "model")
    with pytest.raises(ValueError, match="do not fit"):
        MultiTaskSentenceTransformer.load(tmp_path)
    config["tasks"]["sentiment"] = ["negative", "positive"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_manifest(tmp_path, "model")
    with pytest.raises(ValueError, match="names other labels"):
        MultiTaskSentenceTransformer.load(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"tasks": {}}, "at least one task"),
    ({"tasks": {"topic": ["sports"]}}, "at least two labels"),
    ({"tasks": {"topic": ["a", "a"]}}, "duplicate"),
    ({"tasks": {"topic": ["a", ""]}}, "labels must be non-empty strings"),
    ({"tasks": {"topic": ["a", 3]}}, "labels must be non-empty strings"),
    ({"tasks": {"": ["a", "b"]}}, "task names must be non-empty strings"),
    ({"hidden_dim": 0}, "hidden_dim must be a positive integer, got 0"),
    ({"hidden_dim": True}, "hidden_dim must be a positive integer, got True"),
    ({"dropout": 1.0}, r"dropout must be a number in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"dropout must be a number in \[0, 1\)"),
    ({"max_seq_length": 0}, r"max_seq_length must be an integer from 3 \(two special tokens and one of text\)"),
    ({"max_seq_length": 2}, "max_seq_length must be an integer from 3 .* got 2"),
    ({"max_seq_length": 12.5}, "max_seq_length must be an integer from 3 .* got 12.5"),
    ({"embedding_dim": -1}, "embedding_dim must be a positive integer or null"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(**kwargs)


def test_predict_rejects_bad_input(model):
    with pytest.raises(ValueError, match="empty list"):
        model.predict([])
    with pytest.raises(ValueError, match="batch_size"):
        model.predict(TEXTS, batch_size=0)


# ------------------------------------------------------- modes and determinism
def test_fresh_model_is_in_eval_mode_and_deterministic(encoder):
    model = MultiTaskSentenceTransformer(encoder)  # no .eval(): a freshly built model
    assert not any(module.training for module in model.modules())
    model.predict(TEXTS)
    assert not any(module.training for module in model.modules())
    features = model.tokenize(TEXTS)
    with torch.no_grad():
        first, second = model(features), model(features)
    for key in ("embedding", "topic", "sentiment"):
        assert torch.equal(first[key], second[key]), key  # dropout is off


def test_predict_restores_each_submodule_mode(model):
    model.heads.train()  # e.g. a training loop with a frozen encoder
    try:
        model.predict(TEXTS)
        assert all(head.training for head in model.heads.values())
        assert not model.encoder.training
    finally:
        model.eval()


# ------------------------------------------------------------------ pooling
def test_pool_matches_encode_features(model):
    features = model.tokenize(VARIED)
    with torch.no_grad():
        tokens = model.encoder[0](dict(features))["token_embeddings"]
        pooled = model.pool(tokens, features["attention_mask"])
        expected = model.encode_features(features)
    assert (pooled - expected).abs().max().item() <= 1e-6


def test_pool_uses_the_encoders_own_pooling_mode(encoder):
    cls_encoder = SentenceTransformer(modules=[encoder[0], Pooling(384, pooling_mode="cls")], device="cpu")
    model = MultiTaskSentenceTransformer(cls_encoder)
    features = model.tokenize(TEXTS)
    mask = features["attention_mask"]
    with torch.no_grad():
        tokens = model.encoder[0](dict(features))["token_embeddings"]
        pooled = model.pool(tokens, mask)
        mean = torch.nn.functional.normalize((tokens * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True), dim=1)
        assert (pooled - model.encode_features(features)).abs().max().item() <= 1e-6
    assert torch.allclose(pooled, torch.nn.functional.normalize(tokens[:, 0], dim=1), atol=1e-6)
    assert (pooled - mean).abs().max().item() > 0.05


def test_embedding_dim_comes_from_the_encoder(encoder):
    assert MultiTaskConfig().embedding_dim is None
    smaller = SentenceTransformer(modules=[encoder[0], encoder[1], Dense(384, 128)], device="cpu")
    model = MultiTaskSentenceTransformer(smaller)
    assert model.config.embedding_dim == 128
    assert model.heads["topic"].dense.in_features == 128
    assert model.embed(TEXTS).shape == (len(TEXTS), 128)
    assert len(model.predict(TEXTS)) == len(TEXTS)
    with pytest.raises(ValueError, match="embedding_dim=384 but the encoder's embeddings have 128"):
        MultiTaskSentenceTransformer(smaller, MultiTaskConfig(embedding_dim=384))


def test_truncated_texts_are_reported_once_per_call_despite_quiet(encoder):
    model = full_length(encoder)
    with warnings.catch_warnings(record=True) as caught:
        quiet()
        model.predict(VARIED, batch_size=3)
        model.embed(VARIED[1:3])  # the same long text again, in another call
        model.embed(TEXTS)  # nothing long: no warning
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert messages == [
        "1 of 10 text(s) are longer than the encoder's limit of 256 tokens; only their first 256 tokens were used.",
        "1 of 2 text(s) are longer than the encoder's limit of 256 tokens; only their first 256 tokens were used.",
    ]


# ------------------------------------------------------------- saving files
def test_save_refuses_a_non_empty_directory_that_is_not_a_model(model, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"no manifest.json of mtt_helpers.*notes.txt"):
        model.save(tmp_path, include_encoder=False)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="is a file"):
        model.save(tmp_path / "file")


def test_save_replaces_only_its_own_files_and_never_a_users(model, tmp_path):
    target = tmp_path / "model"
    model.save(target, include_encoder=True)
    listed = json.loads((target / "manifest.json").read_text())["files"]
    assert {"config.json", "heads.safetensors", "encoder/model.safetensors"} <= set(listed)
    assert sorted(listed) == sorted(str(p.relative_to(target)) for p in target.rglob("*")
                                    if p.is_file() and p.name != "manifest.json")
    with pytest.raises(FileExistsError, match="exists; pass overwrite=True"):
        model.save(target, include_encoder=False)
    model.save(target, include_encoder=False, overwrite=True)  # replaces: nothing of the earlier save remains
    assert not (target / "encoder").exists()
    (target / "README.md").write_text("the user's own file")
    (target / "heads.safetensors").write_bytes(b"kept")
    with pytest.raises(FileExistsError, match=r"does not list, which would be lost: 1 item\(s\): README.md"):
        model.save(target, include_encoder=False, overwrite=True)
    assert (target / "README.md").read_text() == "the user's own file"
    assert (target / "heads.safetensors").read_bytes() == b"kept"  # refused before anything was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_save_refuses_a_symlinked_folder(model, tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ValueError, match="symbolic link"):
        model.save(tmp_path / "link", include_encoder=False)
    assert list((tmp_path / "real").iterdir()) == []


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)])
def test_saved_files_have_ordinary_permissions(model, tmp_path, umask, file_mode, dir_mode):
    previous = os.umask(umask)
    try:
        model.save(tmp_path / "model", include_encoder=umask == 0o022)  # the encoder once: 90 MB
    finally:
        os.umask(previous)
    paths = [tmp_path / "model", *(tmp_path / "model").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    assert modes["model/heads.safetensors"] == file_mode
    assert all(mode == (dir_mode if (tmp_path / name).is_dir() else file_mode) for name, mode in modes.items()), modes


def test_truncated_encoder_weights_give_a_clear_error(model, tmp_path):
    model.save(tmp_path, include_encoder=True)
    weights = tmp_path / "encoder" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"encoder/model.safetensors' has sha256 \w+, not the"):
        MultiTaskSentenceTransformer.load(tmp_path)
    write_manifest(tmp_path, "model")  # digests that agree: the encoder itself is then refused
    with pytest.raises(ValueError, match="Cannot load the encoder from .*encoder"):
        MultiTaskSentenceTransformer.load(tmp_path)


@pytest.mark.parametrize("content", ["[]", '"text"', "3", "null"])
def test_config_json_that_is_not_an_object(tmp_path, content):
    (tmp_path / "config.json").write_text(content)
    with pytest.raises(ValueError, match=r"Unreadable model config .*config.json.*expected a JSON object"):
        MultiTaskConfig.from_json(tmp_path / "config.json")


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    config = MultiTaskConfig(tasks={"topic": ["a", "b"]}, embedding_dim=384, max_seq_length=128)
    config.to_json(tmp_path / "config.json", encoder_saved=True)
    assert MultiTaskConfig.from_json(tmp_path / "config.json") == config
    raw = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**raw, "hiden_dim": 10}))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['hiden_dim'\]"):
        MultiTaskConfig.from_json(tmp_path / "config.json")
    with pytest.raises(ValueError, match="Unknown config metadata"):
        config.to_json(tmp_path / "other.json", saved_by="me")
