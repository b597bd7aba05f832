"""Encoder outputs computed once per text: the in-memory store and its keys.

Frozen parts of the encoder give the same output every epoch, so
:func:`~mtt_helpers.training.train` computes them once. Every entry is filed under a key naming
the weights (:func:`weights_key`), the maximum sequence length and the precision that produced it,
so a cache never serves the output of another encoder state or precision.

* In memory: an :class:`EmbeddingCache` (the module's :data:`DEFAULT_CACHE` unless one is passed
  in). It keeps a bounded number of encoder states and forgets the least recently used one,
  and :func:`clear_caches` empties it.
* What fills it: :mod:`~mtt_helpers.training.cache_embeddings` (sentence embeddings, also kept on
  disk by :mod:`~mtt_helpers.training.cache_disk`) and :mod:`~mtt_helpers.training.cache_layers`
  (lower-layer token vectors, in memory only).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass, field

import torch

from mtt_helpers.model import MultiTaskSentenceTransformer, transformer_of, weights_fingerprint


@dataclass
class EmbeddingCache:
    """Encoder outputs kept in memory, per text, under the key of the encoder state that made them."""

    max_embedding_states: int = 16
    """Encoder states whose sentence embeddings are kept (about 1.5 KB per text each); the
    least recently used state is forgotten first."""

    max_hidden_states: int = 2
    """Encoder states whose lower-layer token vectors are kept (about 60 KB per text each:
    large); the least recently used state is forgotten first."""

    embeddings: OrderedDict[str, dict[str, torch.Tensor]] = field(default_factory=OrderedDict)
    """Key -> text hash -> ``(dim,)`` sentence embedding (float32, CPU)."""

    hidden: OrderedDict[tuple[str, int, str], dict[str, torch.Tensor]] = field(default_factory=OrderedDict)
    """(fingerprint of the layers below ``layer``, ``layer``, precision) -> text hash ->
    ``(tokens, dim)`` token vectors after ``layer`` layers (float32, CPU, unpadded)."""

    loaded_parts: set[str] = field(default_factory=set)
    """Disk part files already merged into memory."""

    def embedding_store(self, key: str) -> dict[str, torch.Tensor]:
        """The sentence-embedding store of ``key``, created if new, marked most recently used."""
        return _lru_store(self.embeddings, key, self.max_embedding_states)

    def hidden_store(self, key: tuple[str, int, str]) -> dict[str, torch.Tensor]:
        """The token-vector store of ``key``, created if new, marked most recently used."""
        return _lru_store(self.hidden, key, self.max_hidden_states)

    def clear(self) -> None:
        """Forgets everything held in memory (files on disk stay)."""
        self.embeddings.clear()
        self.hidden.clear()
        self.loaded_parts.clear()


def _lru_store(stores: OrderedDict, key, limit: int) -> dict[str, torch.Tensor]:
    store = stores.pop(key, None)
    stores[key] = store if store is not None else {}
    while len(stores) > max(limit, 1):
        stores.popitem(last=False)
    return stores[key]


DEFAULT_CACHE = EmbeddingCache()
"""The cache used when none is passed in (the notebooks share it across cells)."""


def clear_caches() -> None:
    """Empties :data:`DEFAULT_CACHE` (memory only)."""
    DEFAULT_CACHE.clear()


def weights_key(model: MultiTaskSentenceTransformer, below_layer: int | None = None) -> str:
    """The fingerprint of the encoder's weights (all, or only those below ``below_layer``) and its max length.

    It changes whenever fine-tuning changes those weights, so a cache never serves outputs of an
    older encoder; fine-tuning the top layers keeps the lower layers' key. The weights part is
    :func:`~mtt_helpers.model.fingerprint.weights_fingerprint`, the fingerprint a saved model's
    ``config.json`` holds.
    """
    if below_layer is None:
        state = model.encoder.state_dict()
    else:
        prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(below_layer)))
        state = {k: v for k, v in transformer_of(model).state_dict().items() if k.startswith(prefixes)}
    return f"{weights_fingerprint(state)[:20]}-{model.encoder.max_seq_length}"


def text_key(text: str) -> str:
    """The cache key of one text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def longest_first(texts: list[str]) -> list[str]:
    """Unique texts, longest first, so that batches pad little."""
    return sorted(dict.fromkeys(texts), key=len, reverse=True)
