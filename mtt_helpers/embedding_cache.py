"""Encoder outputs computed once per text: sentence embeddings and lower-layer token vectors.

Frozen parts of the encoder give the same output every epoch, so :func:`train` computes them
once. Every entry is filed under a key naming the weights (:func:`weights_key`), the
maximum sequence length and the precision that produced it, so a cache never serves the output
of another encoder state or precision.

* In memory: an :class:`EmbeddingCache` (the module's :data:`DEFAULT_CACHE` unless one is passed
  in). It keeps a bounded number of encoder states and forgets the least recently used one,
  and :func:`clear_caches` empties it.
* On disk (sentence embeddings only, with ``cache_dir``): one folder per key, holding
  ``part-<random>.safetensors`` files. Each write publishes a *new* part file atomically (a
  temporary file, then ``os.replace``), so a Ctrl-C never leaves a truncated part, and two
  processes writing at once never drop each other's entries: readers merge every part. When a
  folder holds more than :data:`MAX_DISK_PARTS` parts, a writer merges them into one. A part
  that cannot be read is reported with a warning, removed, and its entries recomputed.
"""

from __future__ import annotations

import hashlib
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from mtt_helpers.files import write_atomically
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode
from mtt_helpers.precision import autocast_context, resolve_precision

MAX_DISK_PARTS = 16
"""Part files per cache folder before a writer merges them into one."""


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


# ------------------------------------------------------------------ keys
def transformer_of(model: MultiTaskSentenceTransformer) -> torch.nn.Module:
    """The Hugging Face model inside the Sentence Transformer (a BertModel for MiniLM)."""
    return model.encoder[0].auto_model


def weights_key(model: MultiTaskSentenceTransformer, below_layer: int | None = None) -> str:
    """A hash of the encoder's weights (all, or only those below ``below_layer``) and max length.

    It changes whenever fine-tuning changes those weights, so a cache never serves
    outputs of an older encoder. Fine-tuning the top layers keeps the lower fingerprints.
    """
    digest = hashlib.sha256(f"{model.encoder.max_seq_length}/{below_layer}".encode())
    if below_layer is None:
        state = model.encoder.state_dict()
    else:
        prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(below_layer)))
        state = {k: v for k, v in transformer_of(model).state_dict().items() if k.startswith(prefixes)}
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def text_key(text: str) -> str:
    """The cache key of one text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _longest_first(texts: list[str]) -> list[str]:
    """Unique texts, longest first, so that batches pad little."""
    return sorted(dict.fromkeys(texts), key=len, reverse=True)


# ---------------------------------------------------------------- pooling
# ----------------------------------------------------------- hidden states
def cached_hidden_states(
    model: MultiTaskSentenceTransformer, texts: list[str], layer: int, batch_size: int = 64,
    precision: str = "auto", cache: EmbeddingCache | None = None,
) -> list[torch.Tensor]:
    """Token vectors after the first ``layer`` transformer layers, one ``(tokens, dim)``
    tensor per text (no padding), computed once per state of those layers, in memory.

    The same encoder pass also fills the sentence-embedding cache.

    Args:
        model: The model.
        texts: Texts to encode.
        layer: 0 is the embedding layer's output, ``n`` the output of the ``n``-th layer.
        batch_size: Texts per encoder pass.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (see :func:`resolve_precision`).
        cache: Where to keep them; default :data:`DEFAULT_CACHE`.
    """
    cache = cache or DEFAULT_CACHE
    precision = resolve_precision(precision, model.device)
    store = cache.hidden_store((weights_key(model, layer), layer, precision))
    missing = _longest_first([t for t in texts if text_key(t) not in store])
    if missing:
        embeddings = cache.embedding_store(f"{weights_key(model)}-{precision}")
        bert = transformer_of(model)
        source = bert.embeddings if layer == 0 else bert.encoder.layer[layer - 1]
        captured = []
        hook = source.register_forward_hook(
            lambda module, inputs, output: captured.append(output[0] if isinstance(output, tuple) else output)
        )
        try:
            with eval_mode(model), torch.no_grad(), autocast_context(precision, model.device):
                for start in range(0, len(missing), batch_size):
                    batch = missing[start : start + batch_size]
                    features = model.tokenize(batch)
                    sentence_embeddings = model.encode_features(features).float().cpu()
                    hidden = captured.pop().float().cpu()
                    mask = features["attention_mask"].bool().cpu()
                    for i, text in enumerate(batch):
                        store[text_key(text)] = hidden[i][mask[i]].clone()  # real tokens, either padding side
                        embeddings[text_key(text)] = sentence_embeddings[i].clone()
        finally:
            hook.remove()
    return [store[text_key(t)] for t in texts]


def embed_from_layer(model: MultiTaskSentenceTransformer, hidden: list[torch.Tensor], layer: int) -> torch.Tensor:
    """Runs transformer layers ``layer..end`` on cached token vectors, then the encoder's own
    pooling (:meth:`MultiTaskSentenceTransformer.pool`): the same embedding the full encoder gives (checked in the tests).

    Runs in the caller's autocast context and grad mode (training calls it with gradients on).
    """
    lengths = torch.tensor([h.shape[0] for h in hidden])
    states = torch.nn.utils.rnn.pad_sequence(hidden, batch_first=True).to(model.device)
    mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).to(model.device)
    # Additive attention mask, (batch, 1, 1, tokens): 0 where attended, a huge negative on padding.
    additive = (~mask)[:, None, None, :].to(states.dtype) * torch.finfo(states.dtype).min
    for block in transformer_of(model).encoder.layer[layer:]:
        output = block(states, additive)
        states = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns a tuple
    return model.pool(states, mask.long())


# ------------------------------------------------------------- embeddings
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
        _read_parts(folder, store, cache)
    missing = _longest_first([t for t in texts if text_key(t) not in store])
    if missing:
        new = _embed_missing(model, missing, batch_size, precision, cache)
        store.update(new)
        if folder is not None:
            _write_part(folder, new, store, cache)
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


def _read_parts(folder: Path, store: dict[str, torch.Tensor], cache: EmbeddingCache) -> None:
    """Merges every part file of ``folder`` not read yet into ``store``; an unreadable one is a miss."""
    for path in sorted(folder.glob("part-*.safetensors")):
        if str(path) in cache.loaded_parts:
            continue
        try:
            store.update(load_file(path))
        except FileNotFoundError:
            continue  # merged away by another process since the listing
        except Exception as error:  # safetensors raises its own error types for a damaged file
            warnings.warn(f"Embedding cache file {path} is unreadable ({error}); removing it, its "
                          "embeddings will be recomputed.", stacklevel=3)
            path.unlink(missing_ok=True)
            continue
        cache.loaded_parts.add(str(path))


def _write_part(folder: Path, new: dict[str, torch.Tensor], store: dict[str, torch.Tensor],
                cache: EmbeddingCache) -> None:
    """Publishes ``new`` as one more part file; merges the folder into one part when it holds too many."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = list(folder.glob("part-*.safetensors"))
    merge = len(parts) >= MAX_DISK_PARTS and all(str(p) in cache.loaded_parts for p in parts)
    written = folder / f"part-{uuid.uuid4().hex}.safetensors"
    tensors = {k: v.contiguous() for k, v in (store if merge else new).items()}
    write_atomically(written, lambda path: save_file(tensors, path))
    cache.loaded_parts.add(str(written))
    if merge:  # every entry of those parts is in ``store``, hence in the part just written
        for path in parts:
            path.unlink(missing_ok=True)
            cache.loaded_parts.discard(str(path))
