"""Encoder outputs computed once per text: frozen parts of the encoder give the same output every epoch.

An :class:`EmbeddingCache` belongs to whoever makes it (a notebook, a benchmark, one ``train`` call):
nothing is cached globally. It holds

* sentence embeddings (:meth:`EmbeddingCache.embeddings`), in memory and, when it has a
  ``directory``, in part files on disk that later processes reuse; and
* the token vectors below a layer (:meth:`EmbeddingCache.hidden_states`), in memory only, so that
  fine-tuning the top ``k`` layers runs only those layers at each step.

Every entry is filed under a key naming the weights that made it (:func:`weights_key`), the token
limit and the precision, so a cache never serves the output of another encoder state.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mtt_core.files import write_atomically
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, pad_token_vectors, weights_fingerprint
from mtt_helpers.precision import autocast_context, resolve_precision

MAX_DISK_PARTS = 16
"""Part files per cache folder before a writer merges them into one."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mtt_helpers/embeddings``, or ``~/.cache/mtt_helpers/embeddings``: the user's cache, never the working folder."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "mtt_helpers" / "embeddings"


def weights_key(model: MultiTaskSentenceTransformer, below_layer: int | None = None) -> str:
    """The fingerprint of the encoder's weights (all, or only those below ``below_layer``) and the model's token limit.

    It changes whenever fine-tuning changes those weights; fine-tuning the top layers keeps the lower layers' key.
    """
    if below_layer is None:
        state = model.encoder.state_dict()
    else:
        prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(below_layer)))
        state = {k: v for k, v in model.transformer.state_dict().items() if k.startswith(prefixes)}
    return f"{weights_fingerprint(state)[:20]}-{model.max_seq_length}"


def text_key(text: str) -> str:
    """The cache key of one text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _longest_first(texts: list[str]) -> list[str]:
    """Unique texts, longest first, so that batches pad little."""
    return sorted(dict.fromkeys(texts), key=len, reverse=True)


def _lru_store(stores: OrderedDict, key, limit: int) -> dict[str, torch.Tensor]:
    store = stores.pop(key, None)
    stores[key] = store if store is not None else {}
    while len(stores) > max(limit, 1):
        stores.popitem(last=False)
    return stores[key]


@dataclass
class EmbeddingCache:
    """Encoder outputs per text, under the key of the encoder state that made them."""

    directory: Path | None = None
    """Folder of the on-disk copy of the sentence embeddings; ``None`` keeps them in memory only.
    :meth:`on_disk` gives the user's cache folder."""

    max_embedding_states: int = 16
    """Encoder states whose sentence embeddings are kept (about 1.5 KB per text each); the least
    recently used is forgotten first."""

    max_hidden_states: int = 2
    """Encoder states whose lower-layer token vectors are kept (about 60 KB per text each); the least
    recently used is forgotten first."""

    stores: OrderedDict = field(default_factory=OrderedDict, repr=False)
    """Key -> text hash -> ``(dim,)`` sentence embedding (float32, CPU)."""

    hidden: OrderedDict = field(default_factory=OrderedDict, repr=False)
    """(fingerprint of the layers below ``layer``, ``layer``, precision) -> text hash -> ``(tokens, dim)`` vectors."""

    loaded_parts: set = field(default_factory=set, repr=False)
    """Disk part files already merged into memory."""

    @classmethod
    def on_disk(cls, directory: str | os.PathLike | None = None) -> EmbeddingCache:
        """A cache that also keeps its sentence embeddings in ``directory`` (default :func:`default_cache_dir`)."""
        return cls(Path(directory).expanduser() if directory is not None else default_cache_dir())

    def embeddings(self, model: MultiTaskSentenceTransformer, texts: list[str], precision: str = "auto",
                   batch_size: int = 64) -> torch.Tensor:
        """Sentence embeddings of ``texts`` by the model's current encoder, computed once per text.

        Texts whose lower-layer vectors are cached (after top-layer fine-tuning, say) run only the
        layers above; the others run the whole encoder.

        Returns:
            A ``(len(texts), dim)`` float32 tensor on the CPU.
        """
        precision = resolve_precision(precision, model.device)
        key = f"{weights_key(model)}-{precision}"
        store = _lru_store(self.stores, key, self.max_embedding_states)
        folder = self.directory / key if self.directory is not None else None
        if folder is not None and any(text_key(t) not in store for t in texts):
            self._read_parts(folder, store)
        missing = _longest_first([t for t in texts if text_key(t) not in store])
        if missing:
            new = self._embed(model, missing, batch_size, precision)
            store.update(new)
            if folder is not None:
                self._write_part(folder, new, store)
        return torch.stack([store[text_key(t)] for t in texts])

    def hidden_states(self, model: MultiTaskSentenceTransformer, texts: list[str], layer: int,
                      precision: str = "auto", batch_size: int = 64) -> list[torch.Tensor]:
        """Token vectors after the first ``layer`` transformer layers, one ``(tokens, dim)`` tensor per
        text (no padding), computed once per state of those layers. The same pass fills the sentence embeddings.

        Args:
            layer: 0 is the embedding layer's output, ``n`` the output of the ``n``-th layer.
        """
        precision = resolve_precision(precision, model.device)
        store = _lru_store(self.hidden, (weights_key(model, layer), layer, precision), self.max_hidden_states)
        missing = _longest_first([t for t in texts if text_key(t) not in store])
        if missing:
            embeddings = _lru_store(self.stores, f"{weights_key(model)}-{precision}", self.max_embedding_states)
            source = model.transformer.embeddings if layer == 0 else model.transformer.encoder.layer[layer - 1]
            captured = []
            hook = source.register_forward_hook(
                lambda module, inputs, output: captured.append(output[0] if isinstance(output, tuple) else output))
            try:
                with eval_mode(model), torch.no_grad(), autocast_context(precision, model.device):
                    for start in range(0, len(missing), batch_size):
                        batch = missing[start: start + batch_size]
                        features = {name: ids.to(model.device) for name, ids in model.tokenize(batch).items()}
                        sentence_embeddings = model.encode_features(features).float().cpu()
                        hidden = captured.pop().float().cpu()
                        mask = features["attention_mask"].bool().cpu()
                        for i, text in enumerate(batch):
                            store[text_key(text)] = hidden[i][mask[i]].clone()  # real tokens, either padding side
                            embeddings[text_key(text)] = sentence_embeddings[i].clone()
            finally:
                hook.remove()
        return [store[text_key(t)] for t in texts]

    def clear(self) -> None:
        """Forgets everything held in memory (files on disk stay)."""
        self.stores.clear()
        self.hidden.clear()
        self.loaded_parts.clear()

    def _embed(self, model: MultiTaskSentenceTransformer, missing: list[str], batch_size: int,
               precision: str) -> dict[str, torch.Tensor]:
        """Embeds ``missing`` from stored lower-layer vectors when all are there, else with the whole encoder."""
        keys = [text_key(t) for t in missing]
        for (lower, layer, stored_precision), hidden in list(self.hidden.items()):
            if stored_precision == precision and all(k in hidden for k in keys) and lower == weights_key(model, layer):
                new = {}
                with eval_mode(model), torch.no_grad(), autocast_context(precision, model.device):
                    for start in range(0, len(keys), batch_size):
                        chunk = keys[start: start + batch_size]
                        states, mask = pad_token_vectors([hidden[k] for k in chunk])
                        vectors = model.encode_from_layer(states.to(model.device), mask.to(model.device),
                                                          layer).float().cpu()
                        new.update({k: v.clone() for k, v in zip(chunk, vectors)})
                return new
        with autocast_context(precision, model.device):
            vectors = model.embed(missing, batch_size=batch_size).float()
        return {k: v.clone() for k, v in zip(keys, vectors)}

    def _read_parts(self, folder: Path, store: dict[str, torch.Tensor]) -> None:
        """Merges every part file of ``folder`` not read yet into ``store``; an unreadable one is a miss."""
        for path in sorted(folder.glob("part-*.safetensors")):
            if str(path) in self.loaded_parts:
                continue
            try:
                store.update(load_file(path))
            except FileNotFoundError:
                continue  # merged away by another process since the listing
            except Exception as error:  # safetensors raises its own error types for a damaged file
                warnings.warn(f"Embedding cache file {path} is unreadable ({error}); removing it, its embeddings "
                              "will be computed again.", stacklevel=3)
                path.unlink(missing_ok=True)
                continue
            self.loaded_parts.add(str(path))

    def _write_part(self, folder: Path, new: dict[str, torch.Tensor], store: dict[str, torch.Tensor]) -> None:
        """Publishes ``new`` as one more part file (written beside its place, then renamed, so two processes
        never drop each other's entries); merges the folder into one part when it holds too many."""
        folder.mkdir(parents=True, exist_ok=True)
        parts = list(folder.glob("part-*.safetensors"))
        merge = len(parts) >= MAX_DISK_PARTS and all(str(p) in self.loaded_parts for p in parts)
        written = folder / f"part-{uuid.uuid4().hex}.safetensors"
        tensors = {k: v.contiguous() for k, v in (store if merge else new).items()}
        write_atomically(written, lambda path: save_file(tensors, path))
        self.loaded_parts.add(str(written))
        if merge:  # every entry of those parts is in ``store``, hence in the part just written
            for path in parts:
                path.unlink(missing_ok=True)
                self.loaded_parts.discard(str(path))
