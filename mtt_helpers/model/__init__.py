"""The model: the sentence encoder, the classification heads, the multi-task model and its files."""

from mtt_helpers.model.encoder import (
    EMBEDDING_DIM,
    HUB_MODEL_ID,
    default_model_source,
    embed,
    encoder_layer_count,
    encoder_token_limit,
    get_device,
    load_encoder,
    similarity_table,
    transformer_of,
)
from mtt_helpers.model.fingerprint import weights_fingerprint
from mtt_helpers.model.heads import MLPHead
from mtt_helpers.model.multitask import MultiTaskSentenceTransformer, eval_mode

__all__ = [
    "EMBEDDING_DIM", "HUB_MODEL_ID", "MLPHead", "MultiTaskSentenceTransformer", "default_model_source", "embed",
    "encoder_layer_count", "encoder_token_limit", "eval_mode", "get_device", "load_encoder", "similarity_table",
    "transformer_of", "weights_fingerprint",
]
