"""The embedding cache on disk: one folder per key, each write a new part file published atomically.

Each write publishes a *new* ``part-<random>.safetensors`` file (a temporary file, then
``os.replace``), so a Ctrl-C never leaves a truncated part, and two processes writing at once never
drop each other's entries: readers merge every part. When a folder holds more than
:data:`MAX_DISK_PARTS` parts, a writer merges them into one. A part that cannot be read is
reported with a warning, removed, and its entries recomputed.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from mtt_helpers.files import write_atomically
from mtt_helpers.training.cache import EmbeddingCache

MAX_DISK_PARTS = 16
"""Part files per cache folder before a writer merges them into one."""


def read_parts(folder: Path, store: dict[str, torch.Tensor], cache: EmbeddingCache) -> None:
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


def write_part(folder: Path, new: dict[str, torch.Tensor], store: dict[str, torch.Tensor],
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
