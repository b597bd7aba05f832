"""Tables for training: class counts, seeded stratified samples (and their fingerprints), validation slices, and single-task
datasets stacked into one.

``multitask_frame(...)`` stacks single-task datasets into one table with a column per task, where a
missing label is ``None`` (``IGNORE_INDEX`` once encoded, skipped by the loss).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from mtt_helpers.data.labels import TASK_LABELS, check_labels


def class_counts(labels: pd.Series, task: str | None = None) -> pd.DataFrame:
    """Counts and shares of each class, in the task's label order when ``task`` is given."""
    counts = labels.value_counts()
    if task is not None:
        counts = counts.reindex(TASK_LABELS[task], fill_value=0)
    return pd.DataFrame({"count": counts, "share": (counts / counts.sum()).round(3)})


def stratified_sample(frame: pd.DataFrame, n: int, label_column: str = "label", seed: int = 0) -> pd.DataFrame:
    """Draws ``n`` rows with the class proportions of ``frame``, reproducibly.

    Uses scikit-learn's stratified split. Where that split is impossible (fewer rows left over
    than there are classes, e.g. 12,001 rows and ``n=12000``, or a class with a single row), the
    rows are allocated to classes in proportion (largest remainders) and drawn within each class:
    still exactly ``n`` rows, each class within one row of its proportional share.

    Args:
        frame: The rows to draw from.
        n: How many to keep; ``n >= len(frame)`` keeps all rows (shuffled).
        label_column: Column to stratify on.
        seed: Fixes the draw.

    Returns:
        The sample, index reset.

    Raises:
        ValueError: no such column, ``n < 1``, or ``n`` smaller than the number of classes.
    """
    if label_column not in frame.columns:
        raise ValueError(f"No column {label_column!r}; columns are {list(frame.columns)}.")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if n >= len(frame):
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    counts = frame[label_column].value_counts(sort=False)
    if n < len(counts):
        raise ValueError(f"n={n} is smaller than the number of classes ({len(counts)}).")
    if len(frame) - n < len(counts) or counts.min() < 2:
        return _proportional_sample(frame, n, label_column, counts, seed)
    sample, _ = train_test_split(frame, train_size=n, stratify=frame[label_column], random_state=seed)
    return sample.reset_index(drop=True)


def _proportional_sample(frame: pd.DataFrame, n: int, label_column: str, counts: pd.Series, seed: int) -> pd.DataFrame:
    """``n`` rows, each class's share rounded by largest remainder, drawn within each class."""
    exact = counts * n / len(frame)
    quota = np.floor(exact).astype(int)
    largest_remainders = (exact - quota).sort_values(ascending=False, kind="stable").index[: n - int(quota.sum())]
    quota[largest_remainders] += 1  # never above the class size: ceil(exact) <= count
    parts = [frame[frame[label_column] == label].sample(n=int(k), random_state=seed) for label, k in quota.items()]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def validation_split(frame: pd.DataFrame, size: int | float, seed: int = 0,
                     label_column: str = "label") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carves a seeded, stratified validation slice out of training rows: ``(train, validation)``.

    The slice keeps the class proportions of ``frame`` (:func:`stratified_sample`); the two parts
    share no row and together hold every row of ``frame``, each in its original order and index.

    Args:
        frame: Training rows of one task.
        size: Validation rows (an int >= the number of classes), or a share of ``frame`` (a float
            in (0, 1), rounded, at least one row per class).
        seed: Fixes the draw.
        label_column: Column to stratify on.

    Raises:
        ValueError: no such column, or a size that leaves no training row or cannot hold one row per class.
    """
    if label_column not in frame.columns:
        raise ValueError(f"No column {label_column!r}; columns are {list(frame.columns)}.")
    classes = frame[label_column].nunique()
    if isinstance(size, float) and not isinstance(size, bool):
        if not 0 < size < 1:
            raise ValueError(f"A validation share must be in (0, 1), got {size}.")
        size = max(round(size * len(frame)), classes)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not classes <= size < len(frame):
        raise ValueError(f"A validation slice of {size!r} rows out of {len(frame)} must hold one row per class "
                         f"({classes}) and leave training rows.")
    numbered = frame.assign(_position=np.arange(len(frame)))
    positions = np.sort(stratified_sample(numbered, int(size), label_column, seed)["_position"].to_numpy())
    chosen = np.zeros(len(frame), dtype=bool)
    chosen[positions] = True
    return frame[~chosen], frame[chosen]


def sample_fingerprint(frame: pd.DataFrame, label_column: str = "label") -> str:
    """Names a labelled sample: the first 16 hex digits of the SHA-256 of its rows, in order, each
    written as ``text<TAB>label<NEWLINE>`` in UTF-8. The same rows in another order, or one label
    changed, give another fingerprint; so a results file can say which sample it was made from.

    Raises:
        ValueError: ``frame`` lacks the ``text`` or the label column.
    """
    missing = [c for c in ("text", label_column) if c not in frame.columns]
    if missing:
        raise ValueError(f"No column(s) {missing}; columns are {list(frame.columns)}.")
    digest = hashlib.sha256()
    for text, label in zip(frame["text"], frame[label_column]):
        digest.update(f"{text}\t{label}\n".encode())
    return digest.hexdigest()[:16]


def multitask_frame(**task_frames: pd.DataFrame) -> pd.DataFrame:
    """Stacks datasets into one table with one label column per task.

    Each keyword is a task name. Its frame either has a ``label`` column (a single-task
    dataset) or already has columns named after the tasks (the bundled set). A task an
    example is not labelled for is ``None``.

    Example:
        ``multitask_frame(topic=huffpost_train, sentiment=tweets_train)``

    Returns:
        A DataFrame with ``text``, ``source`` and one column per task in ``TASK_LABELS``.
    """
    if not task_frames:
        raise ValueError("Pass at least one dataset, e.g. multitask_frame(topic=frame).")
    parts = []
    for key, frame in task_frames.items():
        if "label" in frame.columns:
            if key not in TASK_LABELS:
                raise ValueError(f"Unknown task {key!r}; expected one of {list(TASK_LABELS)}.")
            check_labels(frame["label"], key, key)
            part = pd.DataFrame({"text": frame["text"].values, key: frame["label"].values})
        else:
            missing = [task for task in TASK_LABELS if task not in frame.columns]
            if missing:
                raise ValueError(f"Dataset {key!r} has neither a 'label' column nor task column(s) {missing}.")
            for task in TASK_LABELS:
                check_labels(frame[task], task, key)
            part = frame[["text", *TASK_LABELS]].copy()
        part["source"] = key
        parts.append(part)
    combined = pd.concat(parts, ignore_index=True)
    for task in TASK_LABELS:
        if task not in combined.columns:
            combined[task] = None
        combined[task] = combined[task].astype(object).where(combined[task].notna(), None)
    return combined[["text", "source", *TASK_LABELS]]
