"""Helpers for the multitask_transformer tutorial."""

__version__ = "0.1.0"

from mtt_helpers.encoder import (
    EMBEDDING_DIM,
    HUB_MODEL_ID,
    check_texts,
    embed,
    get_device,
    load_encoder,
    similarity_table,
)
from mtt_helpers.model import (
    SENTIMENT_LABELS,
    TOPIC_LABELS,
    MLPHead,
    MultiTaskConfig,
    MultiTaskSentenceTransformer,
)
from mtt_helpers.utils import quiet, set_seed

__all__ = [
    "EMBEDDING_DIM",
    "HUB_MODEL_ID",
    "SENTIMENT_LABELS",
    "TOPIC_LABELS",
    "MLPHead",
    "MultiTaskConfig",
    "MultiTaskSentenceTransformer",
    "check_texts",
    "embed",
    "get_device",
    "load_encoder",
    "quiet",
    "set_seed",
    "similarity_table",
]
