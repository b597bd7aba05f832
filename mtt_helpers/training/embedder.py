"""How training rows become sentence embeddings: from cached vectors, cached lower layers, or the full encoder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from mtt_helpers.model import MultiTaskSentenceTransformer, transformer_of
from mtt_helpers.predictions import token_counts
from mtt_helpers.training.cache import EmbeddingCache
from mtt_helpers.training.cache_embeddings import cached_embeddings
from mtt_helpers.training.cache_layers import cached_hidden_states, embed_from_layer
from mtt_helpers.training.config import ALL_LAYERS, TrainConfig


@dataclass
class BatchEmbedder:
    """The one place where frozen, cached-lower-layer and full-encoder training differ."""

    mode: str
    """``"frozen"``, ``"cached_layers"`` or ``"full"``."""

    embed: Callable[[np.ndarray], torch.Tensor]
    """Training-row indices -> sentence embeddings, with gradients where the encoder learns."""

    dev_embeddings: Callable[[], torch.Tensor | None]
    """Embeddings of the dev texts for scoring, or ``None``: score with the full model."""

    token_counts: np.ndarray | None
    """Tokens per training row, for length grouping; ``None`` when no tokens run (frozen)."""


def make_batch_embedder(
    model: MultiTaskSentenceTransformer, texts: list[str], dev_texts: list[str], config: TrainConfig,
    precision: str, cache: EmbeddingCache,
) -> BatchEmbedder:
    """Chooses and prepares how training rows become embeddings (call after
    :func:`~mtt_helpers.training.freezing.set_trainable`)."""
    k = config.trainable_encoder_layers
    n_layers = len(transformer_of(model).encoder.layer)
    if k == 0:  # every epoch sees the same vectors: compute them once
        train_vectors = cached_embeddings(model, texts, config.cache_dir, precision=precision, cache=cache)
        dev_vectors = cached_embeddings(model, dev_texts, config.cache_dir, precision=precision, cache=cache) if dev_texts else None
        return BatchEmbedder("frozen", lambda index: train_vectors[index].to(model.device), lambda: dev_vectors, None)

    if k != ALL_LAYERS and k < n_layers and config.cache_lower_layers:
        start_layer = n_layers - k
        if config.cached_layer is not None:
            if config.cached_layer > start_layer:
                raise ValueError(f"cached_layer must be between 0 and {start_layer} (below the trainable layers).")
            start_layer = config.cached_layer
        hidden = cached_hidden_states(model, texts, start_layer, precision=precision, cache=cache)
        dev_hidden = cached_hidden_states(model, dev_texts, start_layer, precision=precision, cache=cache) if dev_texts else []

        def dev_embeddings() -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([embed_from_layer(model, dev_hidden[i : i + 128], start_layer).float().cpu()
                                  for i in range(0, len(dev_hidden), 128)])

        return BatchEmbedder(
            "cached_layers", lambda index: embed_from_layer(model, [hidden[i] for i in index], start_layer),
            dev_embeddings, np.array([h.shape[0] for h in hidden]),
        )

    # Whole encoder (or top-k without the cache): tokens run through every layer at each step.
    # Batches are tokenized by the model's own tokenize (a few ms, under 1% of a step).
    return BatchEmbedder(
        "full", lambda index: model.encode_features(model.tokenize([texts[i] for i in index])),
        lambda: None, np.asarray(token_counts(model.encoder.tokenizer, texts, model.encoder.max_seq_length)[0]),
    )
