"""Sentence embeddings of the model's current encoder, computed once per text (in memory and on disk)."""

from __future__ import annotations

from pathlib import Path

import torch

from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode
from mtt_helpers.precision import autocast_context, resolve_precision
from mtt_helpers.training.cache import DEFAULT_CACHE, EmbeddingCache, longest_first, text_key, weights_key
from mtt_helpers.training.cache_disk import read_parts, write_part
from mtt_helpers.training.cache_layers import embed_from_layer


def cached_embeddings(
    model: MultiTaskSentenceTransformer, texts: list[str], cache_dir: str | None = ".mtt_cache", batch_size: int = 64,
    precision: str = "auto", cache: EmbeddingCache | None = None,
) -> torch.Tensor:
    """Sentence embeddings of ``texts`` by the model's current encoder, computed once.

    Cached per text in memory and, with ``cache_dir``, on disk (see the module docstring).
    Texts whose lower-layer outputs are cached (after top-layer fine-tuning, say) only run
    the layers above; others run the whole encoder.

    Args:
        model: The model.
        texts: Texts to embed.
        cache_dir: Folder of the on-disk cache; ``None`` keeps them in memory only.
        batch_size: Texts per encoder pass.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``; stored as float32 either way, under
            separate keys.
        cache: The in-memory cache; default :data:`DEFAULT_CACHE`.

    Returns:
        A ``(len(texts), dim)`` float32 CPU tensor.
    """
    cache = cache or DEFAULT_CACHE
    precision = resolve_precision(precision, model.device)
    key = f"{weights_key(model)}-{precision}"
    store = cache.embedding_store(key)
    folder = Path(cache_dir) / key if cache_dir else None
    if folder is not None and any(text_key(t) not in store for t in texts):
        read_parts(folder, store, cache)
    missing = longest_first([t for t in texts if text_key(t) not in store])
    if missing:
        new = _embed_missing(model, missing, batch_size, precision, cache)
        store.update(new)
        if folder is not None:
            write_part(folder, new, store, cache)
    return torch.stack([store[text_key(t)] for t in texts])


def _embed_missing(model: MultiTaskSentenceTransformer, missing: list[str], batch_size: int, precision: str,
                   cache: EmbeddingCache) -> dict[str, torch.Tensor]:
    """Embeds ``missing`` from cached lower-layer vectors when all are there, else with the whole encoder."""
    keys = [text_key(t) for t in missing]
    for (lower, layer, stored_precision), hidden in list(cache.hidden.items()):
        if stored_precision == precision and all(k in hidden for k in keys) and lower == weights_key(model, layer):
            new = {}
            with eval_mode(model), torch.no_grad(), autocast_context(precision, model.device):
                for start in range(0, len(keys), batch_size):
                    chunk = keys[start : start + batch_size]
                    vectors = embed_from_layer(model, [hidden[k] for k in chunk], layer).float().cpu()
                    new.update({k: v.clone() for k, v in zip(chunk, vectors)})
            return new
    with eval_mode(model), autocast_context(precision, model.device):
        vectors = model.embed(missing, batch_size=batch_size).float()
    return {k: v.clone() for k, v in zip(keys, vectors)}
