"""Chapter 04's few-label recipe: contrastive tuning, heads on the tuned encoder, joint fine-tuning."""

import copy

import pandas as pd
import pytest
import torch

from mtt_core.labels import SENTIMENT_LABELS, TOPIC_LABELS
from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, multitask_frame, set_seed
from mtt_helpers.data import load_bundled, stratified_sample
from mtt_helpers.lowres import FewLabelRecipe, few_label_recipe

TASKS = {"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS, "finance": SENTIMENT_LABELS}
SMALL = dict(contrastive_steps=4, joint_steps=6, head_epochs=2)


@pytest.fixture(scope="module")
def data():
    rows = load_bundled("train")
    few = stratified_sample(rows, 24, label_column="sentiment", seed=0)[["text", "sentiment"]].rename(columns={"sentiment": "label"})
    related = rows[~rows["text"].isin(few["text"])].head(40)[["text", "sentiment"]].rename(columns={"sentiment": "label"})
    return few, multitask_frame({"finance": SENTIMENT_LABELS}, finance=related)


def test_the_recipe_tunes_the_top_layers_and_trains_both_heads(encoder, data):
    few, related = data
    set_seed(0)
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder), MultiTaskConfig(tasks=TASKS))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    returned = few_label_recipe(model, few, related, FewLabelRecipe(**SMALL))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert returned is model
    encoder_changes = {k for k in changed if k.startswith("encoder.")}
    assert encoder_changes and all(".layer.4." in k or ".layer.5." in k for k in encoder_changes)
    assert any(k.startswith("heads.sentiment.") for k in changed) and any(k.startswith("heads.finance.") for k in changed)
    assert not any(k.startswith("heads.topic.") for k in changed)  # the head it does not use stays as it was
    assert FewLabelRecipe(**SMALL).encoder_steps == 10


def test_a_missing_head_or_related_column_is_named_before_training(encoder, data):
    few, related = data
    two_heads = MultiTaskSentenceTransformer(copy.deepcopy(encoder))
    with pytest.raises(ValueError, match="no 'finance' head"):
        few_label_recipe(two_heads, few, related, FewLabelRecipe(**SMALL))
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder), MultiTaskConfig(tasks=TASKS))
    with pytest.raises(ValueError, match="no labelled 'finance' column"):
        few_label_recipe(model, few, pd.DataFrame({"text": ["a"], "source": ["x"]}), FewLabelRecipe(**SMALL))
