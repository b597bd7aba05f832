import warnings

import pytest
import torch

from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, embed, load_encoder, quiet, similarity_table
from mtt_helpers.encoder import EMBEDDING_DIM, default_model_source
from mtt_core.predictions import InputWarning

SEED_SENTENCES = ["The dog ran across the grass.", "Why is the sky blue?", "The cat jumped into the weeds."]
VARIED = [
    "ok",
    "A",
    "Stock markets fell sharply after the central bank raised interest rates.",
    "i can't believe the update bricked my phone AGAIN #fail @user",
    " ".join(["word"] * 400),  # longer than the 256-token limit: truncated the same way
    "Café prices in Zürich: 7,50 CHF — ça alors!",
]


def test_embed_shape_and_unit_norm(encoder):
    embeddings = embed(encoder, SEED_SENTENCES)
    assert embeddings.shape == (3, EMBEDDING_DIM)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(3), atol=1e-5)


def test_seed_readme_cosine_values(encoder):
    table = similarity_table(SEED_SENTENCES, embed(encoder, SEED_SENTENCES))
    assert list(table.columns) == ["cosine_sim", "sentence_1", "sentence_2"]
    got = {frozenset((r.sentence_1, r.sentence_2)): r.cosine_sim for r in table.itertuples()}
    dog, sky, cat = SEED_SENTENCES
    assert got[frozenset((dog, cat))] == pytest.approx(0.376084, abs=1e-4)
    assert got[frozenset((dog, sky))] == pytest.approx(0.069512, abs=1e-4)
    assert got[frozenset((sky, cat))] == pytest.approx(0.021868, abs=1e-4)
    assert table["cosine_sim"].is_monotonic_decreasing


def test_model_embed_matches_sentence_transformers_encode(encoder):
    model = MultiTaskSentenceTransformer(encoder, MultiTaskConfig(max_seq_length=None))  # the encoder's own 256, as encode runs
    ours = model.embed(VARIED, batch_size=4)
    theirs = encoder.encode(VARIED, convert_to_tensor=True, normalize_embeddings=True).cpu()
    assert (ours - theirs).abs().max().item() <= 1e-5


@pytest.mark.parametrize(
    "texts, error, message",
    [
        ([], ValueError, "empty list"),
        ("one string", TypeError, "one string"),
        (["fine", 3], TypeError, "Item 1 is int"),
        (["fine", "   "], ValueError, "Item 1 is an empty"),
        (["fine", None], TypeError, "Item 1 is NoneType"),
    ],
)
def test_embed_rejects_bad_input(encoder, texts, error, message):
    with pytest.raises(error, match=message):
        embed(encoder, texts)


def test_similarity_table_needs_matching_rows(encoder):
    embeddings = embed(encoder, SEED_SENTENCES)
    with pytest.raises(ValueError, match="3 texts but 2 embeddings"):
        similarity_table(SEED_SENTENCES, embeddings[:2])
    with pytest.raises(ValueError, match="at least two"):
        similarity_table(SEED_SENTENCES[:1], embeddings[:1])


def test_load_encoder_missing_directory():
    with pytest.raises(FileNotFoundError, match="Encoder directory not found"):
        load_encoder("./no/such/model")


def test_load_encoder_expands_home(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "minilm").symlink_to(default_model_source()[0], target_is_directory=True)
    monkeypatch.setenv("HOME", str(tmp_path))
    encoder = load_encoder("~/models/minilm", device="cpu")
    assert encoder.get_embedding_dimension() == EMBEDDING_DIM
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing")):
        load_encoder("~/nothing")


def test_embed_reports_truncated_texts_despite_quiet(encoder):
    with warnings.catch_warnings(record=True) as caught:
        quiet()
        embed(encoder, VARIED)
    messages = [str(w.message) for w in caught if issubclass(w.category, InputWarning)]
    assert messages == [
        "1 of 6 text(s) are longer than the encoder's limit of 256 tokens; only their first 256 tokens were used."
    ]
