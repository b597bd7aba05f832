"""The export's tokenizer, read with the ``tokenizers`` library alone (no transformers, no torch).

``tokenizer.json`` holds the whole pipeline (normaliser, pre-tokeniser, WordPiece, special tokens);
``tokenizer_config.json`` says which token pads and on which side texts are padded and cut. Two
copies are loaded: one with truncation and padding off, to count every text's tokens, and one that
cuts texts at the model's limit and pads each batch to its longest text, as the Hugging Face
tokenizer does with ``padding=True, truncation=True, max_length=...``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TOKENIZER_FILE = "tokenizer.json"
"""The ``tokenizers`` pipeline, written by ``save_pretrained`` of a fast Hugging Face tokenizer."""

TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
"""The Hugging Face tokenizer's settings: pad token, padding and truncation sides, length limit."""

MAX_POSITIONS = 512
"""Length limit when neither the model's config nor the tokenizer's names one: BERT's positions."""


def _token_text(token: str | dict) -> str:
    """A special token as ``tokenizer_config.json`` stores it: a string, or an ``AddedToken`` dict."""
    return token["content"] if isinstance(token, dict) else token


def load_tokenizers(directory: Path, max_seq_length: int | None):
    """The counting and the batching tokenizer of an export directory, and the token limit.

    Args:
        directory: An export directory.
        max_seq_length: The model's limit (its ``config.json``); ``None`` takes the tokenizer's
            ``model_max_length``, at most :data:`MAX_POSITIONS`.

    Returns:
        ``(counting, batching, max_seq_length)``: two ``tokenizers.Tokenizer``.

    Raises:
        FileNotFoundError: a tokenizer file is missing.
        ValueError: a tokenizer file cannot be read, or ``max_seq_length`` is above :data:`MAX_POSITIONS`.
    """
    from tokenizers import Tokenizer

    missing = [name for name in (TOKENIZER_CONFIG_FILE, TOKENIZER_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"Missing tokenizer files in {str(directory)!r} ({', '.join(missing)}).")
    try:
        settings = json.loads((directory / TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
        counting = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        batching = Tokenizer.from_file(str(directory / TOKENIZER_FILE))
        if max_seq_length is None:  # an older config without the limit: never more positions than the model has
            max_seq_length = min(int(settings.get("model_max_length", MAX_POSITIONS)), MAX_POSITIONS)
        pad_token = _token_text(settings["pad_token"])
        pad_id = batching.token_to_id(pad_token)
        if pad_id is None:
            raise ValueError(f"the pad token {pad_token!r} is not in the vocabulary")
    except Exception as error:  # json, a missing key, or the tokenizers library (which raises plain Exceptions)
        raise ValueError(f"Cannot load the tokenizer from {str(directory)!r}: {error}") from error
    if max_seq_length > MAX_POSITIONS:
        raise ValueError(f"max_seq_length={max_seq_length} in {str(directory / 'config.json')!r} is above the model's "
                         f"limit of {MAX_POSITIONS} tokens (its position embeddings).")
    counting.no_truncation()
    counting.no_padding()
    batching.enable_truncation(max_seq_length, strategy="longest_first",
                               direction=settings.get("truncation_side", "right"))
    batching.enable_padding(direction=settings.get("padding_side", "right"), pad_id=pad_id, pad_token=pad_token,
                            pad_type_id=int(settings.get("pad_token_type_id", 0)))
    return counting, batching, int(max_seq_length)


def encode_batch(tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """``input_ids``, ``attention_mask`` and ``token_type_ids`` of ``texts``, int64, ``(batch, longest)``."""
    encodings = tokenizer.encode_batch(list(texts))
    return {
        "input_ids": np.array([encoding.ids for encoding in encodings], dtype=np.int64),
        "attention_mask": np.array([encoding.attention_mask for encoding in encodings], dtype=np.int64),
        "token_type_ids": np.array([encoding.type_ids for encoding in encodings], dtype=np.int64),
    }
