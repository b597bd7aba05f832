"""Texts that calibrate the int8 graph's activation ranges, and the reader that feeds them to onnxruntime.

Static quantisation fixes one scale per activation tensor, measured once by running the fp32 graph
on typical texts. The texts come from a CSV file with a ``text`` column, or by default from the
bundled dataset shipped inside the package (:func:`~mtt_helpers.data.load_bundled`), which exists
offline and covers both tasks' topics and tones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from mtt_helpers.onnx.tokenizer import encode_batch

CALIBRATION_BATCH_SIZE = 16
"""Texts per calibration batch. Batches are sorted by length, so they hold little padding."""


@dataclass(frozen=True)
class CalibrationTexts:
    """Texts to calibrate with, and where they came from (recorded in the int8 graph)."""

    texts: list[str]
    """The texts, each non-empty."""
    source: str
    """Where they came from, for people: ``"bundled dataset (...)"`` or the CSV file's path."""


def bundled_calibration_texts() -> CalibrationTexts:
    """All sentences of the bundled dataset (every split): the default calibration set."""
    from mtt_helpers.data.bundled import BUNDLED_CSV, load_bundled

    return CalibrationTexts(load_bundled()["text"].tolist(), f"bundled dataset ({BUNDLED_CSV.name})")


def csv_calibration_texts(path: str | os.PathLike) -> CalibrationTexts:
    """The ``text`` column of a CSV file, empty texts dropped.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is unreadable, has no ``text`` column, or no non-empty text.
    """
    from mtt_helpers.data.csv_reader import read_text_csv

    path = Path(path).expanduser()
    frame, _ = read_text_csv(path)
    if "text" not in frame.columns:
        raise ValueError(f"Calibration file {str(path)!r} has no 'text' column; its columns are {list(frame.columns)}.")
    texts = [text for text in frame["text"] if text.strip()]
    if not texts:
        raise ValueError(f"Calibration file {str(path)!r} has no non-empty text.")
    return CalibrationTexts(texts, str(path))


def check_calibration_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, refusing a single string, an empty list and empty or non-string items."""
    if isinstance(texts, str):
        raise TypeError("calibration texts must be a list of strings, got one string.")
    texts = list(texts)
    if not texts:
        raise ValueError("calibration texts are empty; pass at least one text.")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str) or not text.strip()]
    if bad:
        raise ValueError(f"calibration text(s) at index {bad[:10]} are empty or not strings.")
    return texts


class TextCalibrationReader(CalibrationDataReader):
    """Tokenised texts for ``onnxruntime.quantization.quantize_static``, one batch per ``get_next``.

    Texts are sorted by length and cut into batches of :data:`CALIBRATION_BATCH_SIZE`, so padding
    (whose hidden states are computed but never used) barely enters the measured ranges.
    ``set_range`` and ``len`` let onnxruntime collect one batch at a time (its
    ``CalibStridedMinMax`` option), which bounds memory: without it every intermediate tensor of
    every batch is held until the end.

    Args:
        tokenizer: The export's batching tokenizer (``load_tokenizers``), which cuts and pads.
        texts: The calibration texts.
        input_names: The graph's inputs, e.g. ``["input_ids", "attention_mask", "token_type_ids"]``.
    """

    def __init__(self, tokenizer, texts: Sequence[str], input_names: Sequence[str]) -> None:
        ordered = sorted(texts, key=len)
        self.batches = []
        for start in range(0, len(ordered), CALIBRATION_BATCH_SIZE):
            encoded = encode_batch(tokenizer, ordered[start : start + CALIBRATION_BATCH_SIZE])
            self.batches.append({name: encoded.get(name, np.zeros_like(encoded["input_ids"])) for name in input_names})
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        """Limits the following ``get_next`` calls to batches ``start_index`` to ``end_index - 1``."""
        self._next, self._end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= self._end:
            return None
        self._next += 1
        return self.batches[self._next - 1]
