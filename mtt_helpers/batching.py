"""Inference plumbing shared by the torch model and the ONNX predictor.

* ``run_token_sorted``: count each text's tokens, run the texts in batches sorted by that count
  (longest first, so each batch pads to texts of about its own length), and return the outputs in
  the input order. Texts cut at the token limit are counted and reported once per call.
* ``predictions_table``: logits -> the ``sentence, text_class, sentiment, prob_<task>_<label>`` table.

Both backends pass their own "run one batch" callable; nothing else differs between them.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import softmax

from mtt_helpers.utils import InputWarning

PREDICTION_COLUMN = {"topic": "text_class", "sentiment": "sentiment"}
"""Column name of each task's predicted label in the predictions table (other tasks: the task name)."""

_COUNT_CHUNK = 1024
"""Texts tokenized per call while counting tokens; bounds the memory of one call."""


def token_counts(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[int], int]:
    """Tokens each text gives (special tokens included) after truncation at ``max_length``.

    Args:
        tokenizer: A Hugging Face tokenizer.
        texts: The sentences.
        max_length: The encoder's token limit.

    Returns:
        ``(counts, truncated)``: one count per text, at most ``max_length``, and how many
        texts are longer than ``max_length`` and will be cut.
    """
    counts: list[int] = []
    for start in range(0, len(texts), _COUNT_CHUNK):
        # No truncation here, so texts over the limit can be counted; verbose=False silences the
        # tokenizer's own "longer than the maximum" message, which we replace by a count.
        encoded = tokenizer(list(texts[start : start + _COUNT_CHUNK]), truncation=False, verbose=False)
        counts.extend(len(ids) for ids in encoded["input_ids"])
    truncated = sum(count > max_length for count in counts)
    return [min(count, max_length) for count in counts], truncated


def warn_truncated(truncated: int, total: int, max_length: int) -> None:
    """Warns, with :class:`~mtt_helpers.utils.InputWarning`, when some texts were cut at the limit."""
    if truncated:
        warnings.warn(
            f"{truncated} of {total} text(s) are longer than the encoder's limit of {max_length} tokens; "
            f"only their first {max_length} tokens were used.",
            InputWarning,
            stacklevel=_first_frame_outside_libraries(),
        )


def _first_frame_outside_libraries() -> int:
    """The ``stacklevel`` of the innermost caller outside this package and torch, so that the
    warning names the user's line (the one that called ``predict`` or ``embed``)."""
    torch = sys.modules.get("torch")  # its no_grad wrapper sits between predict() and its caller
    inside = tuple(os.path.dirname(module.__file__) + os.sep for module in (sys.modules[__package__], torch) if module)
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def run_token_sorted(
    texts: Sequence[str],
    tokenizer: Any,
    max_length: int,
    batch_size: int,
    run_batch: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    tokenize_batch: Callable[[list[str]], Mapping[str, Any]] | None = None,
) -> dict[str, np.ndarray]:
    """Runs ``texts`` through a model in batches sorted by token count; outputs in input order.

    Sorting by tokens rather than characters (as ``SentenceTransformer.encode`` does) matters:
    an emoji or a rare word is several tokens, and every padding token costs as much encoder
    compute as a real one.

    Args:
        texts: Validated sentences (see ``check_texts``).
        tokenizer: The Hugging Face tokenizer, used to count tokens.
        max_length: The token limit; longer texts are cut, counted and reported once.
        batch_size: Texts per batch.
        run_batch: Maps one tokenized batch to ``{output name: (batch, ...) array or tensor}``.
        tokenize_batch: Tokenizes one sorted batch with padding to its longest text; the default
            calls ``tokenizer(batch, padding=True, truncation=True, max_length=max_length)``
            returning NumPy arrays.

    Returns:
        ``{output name: array}``, row ``i`` belonging to ``texts[i]``.

    Raises:
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    if tokenize_batch is None:

        def tokenize_batch(batch: list[str]) -> Mapping[str, Any]:
            return tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="np")

    counts, truncated = token_counts(tokenizer, texts, max_length)
    warn_truncated(truncated, len(texts), max_length)
    order = sorted(range(len(texts)), key=lambda i: -counts[i])  # stable: ties keep input order
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(order), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        for name, value in run_batch(tokenize_batch(batch)).items():
            chunks.setdefault(name, []).append(np.asarray(value))
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[np.asarray(order)] = np.arange(len(order))
    return {name: np.concatenate(values)[inverse] for name, values in chunks.items()}


def predictions_table(texts: Sequence[str], logits: Mapping[str, Any], tasks: Mapping[str, list[str]]) -> pd.DataFrame:
    """The predictions of every task as one table.

    Args:
        texts: The sentences, in the order of the logits' rows.
        logits: ``{task: (len(texts), len(labels)) logits}`` (NumPy arrays or CPU tensors).
        tasks: Task -> labels in the order of the head's outputs (the model's config).

    Returns:
        ``sentence``, one label column per task (``text_class`` for topic, ``sentiment`` for
        sentiment, else the task name), then ``prob_<task>_<label>`` columns.
    """
    table = pd.DataFrame({"sentence": list(texts)})
    probabilities = {task: softmax(np.asarray(logits[task], dtype=np.float32), axis=1) for task in tasks}
    for task, labels in tasks.items():
        table[PREDICTION_COLUMN.get(task, task)] = [labels[i] for i in probabilities[task].argmax(axis=1)]
    for task, labels in tasks.items():
        for j, label in enumerate(labels):
            table[f"prob_{task}_{label}"] = probabilities[task][:, j]
    return table
