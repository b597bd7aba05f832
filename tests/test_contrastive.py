import copy

import pytest
import torch

from mtt_helpers import MultiTaskSentenceTransformer, set_seed
from mtt_helpers.data import load_bundled, stratified_sample
from mtt_helpers.lowres import ContrastiveConfig, contrastive_tune, pair_loss

SMALL = dict(steps=12, batch_size=12, encoder_lr=2e-4, precision="fp32")


@pytest.fixture(scope="module")
def labelled():
    frame = stratified_sample(load_bundled("train"), 24, label_column="sentiment", seed=0)
    return frame["text"].tolist(), frame["sentiment"].tolist()


def same_minus_other(model, texts, labels):
    """Mean cosine of same-label pairs minus mean cosine of different-label pairs."""
    with torch.no_grad():
        vectors = model.embed(texts)
    similarity = vectors @ vectors.T
    labels = list(labels)
    same = torch.tensor([[a == b for b in labels] for a in labels])
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    return (similarity[same & off_diagonal].mean() - similarity[~same].mean()).item()


def test_tuning_pulls_same_label_texts_together_and_changes_only_the_top_layers(encoder, labelled):
    texts, labels = labelled
    set_seed(0)
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder)).eval()
    before_gap = same_minus_other(model, texts, labels)
    before = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    losses = contrastive_tune(model, texts, labels, ContrastiveConfig(trainable_encoder_layers=2, **SMALL))
    after = model.transformer.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("encoder.layer.4.", "encoder.layer.5.")) for k in changed)
    assert same_minus_other(model, texts, labels) > before_gap + 0.05
    assert len(losses) == 12 and losses[-1] < losses[0]
    assert not model.training and not any(m.training for m in model.modules()), "eval mode restored"


def test_same_seed_same_weights_and_the_callers_random_state_is_left_alone(encoder, labelled):
    texts, labels = labelled
    weights = []
    for draws in (0, 7):
        model = MultiTaskSentenceTransformer(copy.deepcopy(encoder)).eval()
        torch.rand(draws)  # the run must not depend on the global generator...
        before = torch.get_rng_state()
        contrastive_tune(model, texts, labels, ContrastiveConfig(**{**SMALL, "steps": 3}))
        assert torch.equal(torch.get_rng_state(), before)  # ... nor move it
        weights.append(model.transformer.encoder.layer[5].output.dense.weight.detach().clone())
    assert torch.equal(weights[0], weights[1])


def test_tunes_an_encoder_whose_weights_were_frozen(encoder, labelled):
    # A head-only train() switches requires_grad off on the encoder; tuning must still work, and restore the flags.
    texts, labels = labelled
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder)).eval()
    model.encoder.requires_grad_(False)
    top = model.transformer.encoder.layer[5].output.dense.weight
    before = top.detach().clone()
    contrastive_tune(model, texts, labels, ContrastiveConfig(**{**SMALL, "steps": 2}))
    assert not torch.equal(before, top.detach()) and not top.requires_grad


@pytest.mark.parametrize("texts, labels, config, message", [
    (["a", "b"], ["x"], None, "same length"),
    (["a", "b", "c"], ["x", "x", "x"], None, ">= 2 classes"),
    (["a", "b"], ["x", "y"], None, "class with >= 2 texts"),
    (["a", "b", "c"], ["x", "x", "y"], ContrastiveConfig(trainable_encoder_layers=7), "has 6 layers"),
])
def test_bad_input_is_named(encoder, texts, labels, config, message):
    model = MultiTaskSentenceTransformer(encoder)
    with pytest.raises(ValueError, match=message):
        contrastive_tune(model, texts, labels, config)


@pytest.mark.parametrize("field, value", [("trainable_encoder_layers", 0), ("steps", 0), ("batch_size", 1),
                                          ("precision", "int8"), ("warmup_ratio", 1.0)])
def test_bad_config_is_named(field, value):
    with pytest.raises(ValueError, match=field):
        ContrastiveConfig(**{field: value})


def test_pair_loss_asks_same_label_pairs_for_cosine_one_and_others_for_zero():
    labels = torch.tensor([0, 0, 1])
    perfect = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # same label: parallel; other label: orthogonal
    assert pair_loss(perfect, labels).item() == pytest.approx(0.0, abs=1e-7)
    crossed = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # the same-label pair orthogonal, one other pair parallel
    # Pairs (0,1): cos 0, target 1; (0,2): cos 1, target 0; (1,2): cos 0, target 0 -> (1 + 1 + 0) / 3.
    assert pair_loss(crossed, labels).item() == pytest.approx(2 / 3)


def test_a_pair_mining_rule_replaces_the_loss(encoder, labelled):
    texts, labels = labelled
    given = []

    def shifted(embeddings, targets):  # a rule of the learner's: records its calls, returns what is used
        value = pair_loss(embeddings, targets) + 1.0
        given.append(((embeddings.shape, targets.shape), value.item()))
        return value

    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder)).eval()
    losses = contrastive_tune(model, texts, labels, ContrastiveConfig(**{**SMALL, "steps": 3}), loss=shifted)
    assert [shapes for shapes, _ in given] == [(torch.Size([12, 384]), torch.Size([12]))] * 3
    assert losses == [value for _, value in given] and min(losses) >= 1.0
