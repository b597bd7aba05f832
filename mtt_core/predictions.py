"""Inference plumbing shared by the torch model and the ONNX runtime (NumPy, pandas, SciPy; no torch).

* ``is_text``: the one rule for what counts as a text (a string holding more than white space), and
  ``check_texts``: that rule applied to the sentences every ``predict`` and ``embed`` receives.
* ``run_token_sorted``: count each text's tokens, run the texts in batches sorted by that count
  (longest first, so each batch pads to texts of about its own length), and return the outputs in
  the input order. Texts cut at the token limit are counted and reported once per call.
* ``predictions_table``: logits -> the ``sentence, text_class, sentiment, prob_<task>_<label>`` table;
  ``prediction_records``: that table -> one JSON-ready dict per text (the HTTP service's answer).

Both backends pass their own "tokenize one batch" and "run one batch" callables; nothing else
differs between them.
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

PREDICTION_COLUMN = {"topic": "text_class", "sentiment": "sentiment"}
"""Column name of each task's predicted label in the predictions table (other tasks: the task name)."""

_COUNT_CHUNK = 1024
"""Texts tokenized per call while counting tokens; bounds the memory of one call."""


class InputWarning(Warning):
    """Something about the user's input worth seeing even after ``quiet()``: texts cut at the
    encoder's token limit, empty texts dropped from a dataset.

    A direct subclass of ``Warning``, not of ``UserWarning``, because ``quiet()`` silences
    ``UserWarning`` (the libraries' noise) and filters match subclasses. ``quiet()`` and the
    command line show it every time (not once per code location, Python's default), so each call
    reports its own input.
    """


def is_text(value: Any) -> bool:
    """Whether ``value`` is a text this project accepts: a string holding more than white space."""
    return isinstance(value, str) and bool(value.strip())


def check_texts(texts: Sequence[str]) -> list[str]:
    """Validates a list of sentences.

    Args:
        texts: Sentences to embed or classify.

    Returns:
        The sentences as a list.

    Raises:
        TypeError: ``texts`` is a single string, or an item is not a string.
        ValueError: the list is empty, or an item is empty or whitespace only.
    """
    if isinstance(texts, str):
        raise TypeError("Expected a list of strings, got one string; wrap it in a list: [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("Expected at least one sentence, got an empty list.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"Item {i} is {type(text).__name__}, not str: {text!r}")
        if not is_text(text):
            raise ValueError(f"Item {i} is an empty or whitespace-only string.")
    return texts


def untruncated_lengths(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens each text gives, special tokens included, without truncation.

    Args:
        tokenizer: A Hugging Face tokenizer, or a ``tokenizers.Tokenizer`` with truncation and
            padding turned off (what the ONNX predictor counts with).
        texts: The sentences.
    """
    lengths: list[int] = []
    for start in range(0, len(texts), _COUNT_CHUNK):
        chunk = list(texts[start : start + _COUNT_CHUNK])
        if hasattr(tokenizer, "encode_batch"):  # tokenizers.Tokenizer
            lengths.extend(len(encoding.ids) for encoding in tokenizer.encode_batch(chunk))
        else:
            # verbose=False silences the tokenizer's own "longer than the maximum" message,
            # which the callers replace by a count.
            lengths.extend(len(ids) for ids in tokenizer(chunk, truncation=False, verbose=False)["input_ids"])
    return lengths


def token_counts(tokenizer: Any, texts: Sequence[str], max_length: int) -> tuple[list[int], int]:
    """Tokens each text gives (special tokens included) after truncation at ``max_length``.

    Args:
        tokenizer: See :func:`untruncated_lengths`.
        texts: The sentences.
        max_length: The encoder's token limit.

    Returns:
        ``(counts, truncated)``: one count per text, at most ``max_length``, and how many
        texts are longer than ``max_length`` and will be cut.
    """
    counts = untruncated_lengths(tokenizer, texts)
    truncated = sum(count > max_length for count in counts)
    return [min(count, max_length) for count in counts], truncated


def warn_truncated(truncated: int, total: int, max_length: int) -> None:
    """Warns, with :class:`InputWarning`, when some texts were cut at the limit."""
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
    inside = tuple(os.path.dirname(module.__file__) + os.sep for module in (sys.modules[__package__], sys.modules.get("mtt_helpers"), torch) if module)
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
    tokenize_batch: Callable[[list[str]], Mapping[str, Any]],
) -> dict[str, np.ndarray]:
    """Runs ``texts`` through a model in batches sorted by token count; outputs in input order.

    Sorting by tokens rather than characters (as ``SentenceTransformer.encode`` does) matters:
    an emoji or a rare word is several tokens, and every padding token costs as much encoder
    compute as a real one.

    Args:
        texts: Validated sentences (see :func:`check_texts`).
        tokenizer: Counts the tokens (see :func:`untruncated_lengths`).
        max_length: The token limit; longer texts are cut, counted and reported once.
        batch_size: Texts per batch.
        run_batch: Maps one tokenized batch to ``{output name: (batch, ...) array or tensor}``.
        tokenize_batch: Tokenizes one sorted batch, truncated at ``max_length`` and padded to its
            longest text.

    Returns:
        ``{output name: array}``, row ``i`` belonging to ``texts[i]``.

    Raises:
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
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
    """The predictions of every task as one table (what every ``predict`` returns).

    Args:
        texts: The sentences, in the order of the logits' rows.
        logits: ``{task: (len(texts), len(labels)) logits}`` (NumPy arrays or CPU tensors).
        tasks: Task -> labels in the order of the head's outputs (the model's config).

    Raises:
        ValueError: a logit is NaN or infinite (broken weights give no trustworthy label).

    Returns:
        ``sentence``, one label column per task (``text_class`` for topic, ``sentiment`` for
        sentiment, else the task name), then ``prob_<task>_<label>`` columns.
    """
    broken = [task for task in tasks if not np.isfinite(np.asarray(logits[task], dtype=np.float32)).all()]
    if broken:
        raise ValueError(f"The {', '.join(broken)} logits hold NaN or infinite values: the model's weights are "
                         "broken, so no label can be trusted.")
    table = pd.DataFrame({"sentence": list(texts)})
    probabilities = {task: softmax(np.asarray(logits[task], dtype=np.float32), axis=1) for task in tasks}
    for task, labels in tasks.items():
        table[PREDICTION_COLUMN.get(task, task)] = [labels[i] for i in probabilities[task].argmax(axis=1)]
    for task, labels in tasks.items():
        for j, label in enumerate(labels):
            table[f"prob_{task}_{label}"] = probabilities[task][:, j]
    return table


def prediction_records(table: pd.DataFrame, tasks: Mapping[str, list[str]]) -> list[dict]:
    """``predict``'s table -> one JSON-ready dict per text (``text``, one label per task, probabilities)."""
    records = []
    for row in table.to_dict(orient="records"):
        record: dict[str, Any] = {"text": row["sentence"]}
        for task in tasks:
            record[task] = row[PREDICTION_COLUMN.get(task, task)]
        record["probabilities"] = {
            task: {label: float(row[f"prob_{task}_{label}"]) for label in labels} for task, labels in tasks.items()
        }
        records.append(record)
    return records
