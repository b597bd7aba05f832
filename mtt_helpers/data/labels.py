"""The tasks' label sets, and labels checked, recognised and encoded as class indices."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from mtt_helpers.config import SENTIMENT_LABELS, TOPIC_LABELS

if TYPE_CHECKING:
    import torch

TASK_LABELS: dict[str, list[str]] = {"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS}
"""Label set of each task, in head order."""

IGNORE_INDEX = -100
"""Encoded label of a task an example is not labelled for; ``cross_entropy`` skips it."""


def check_labels(labels: pd.Series, task: str, source: str, allowed: list[str] | None = None) -> None:
    """Raises ``ValueError`` naming every label outside ``allowed`` (default: ``task``'s label set)."""
    if allowed is None:
        if task not in TASK_LABELS:
            raise ValueError(f"Unknown task {task!r}; expected one of {list(TASK_LABELS)}.")
        allowed = TASK_LABELS[task]
    unknown = sorted(set(labels) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{source}: label(s) {unknown} are not {task} labels {list(allowed)}.")


def infer_task(labels: pd.Series, source: str) -> str:
    """Names the task whose label set contains every label in ``labels``."""
    found = set(labels)
    for task, allowed in TASK_LABELS.items():
        if found <= set(allowed):
            return task
    raise ValueError(
        f"{source}: labels {sorted(found)} fit no task; expected a subset of one of {TASK_LABELS}."
    )


def encode_labels(frame: pd.DataFrame, task: str, labels: list[str] | None = None) -> torch.Tensor:
    """Label names -> class indices for ``task``; a missing label -> ``IGNORE_INDEX``.

    Args:
        frame: A table with a ``task`` column.
        task: The column to encode.
        labels: The class labels in head order. Pass the model's own list
            (``model.config.tasks[task]``): it is what predictions are decoded with, so the two
            can never disagree. ``None`` uses ``TASK_LABELS[task]``.

    Returns:
        A ``long`` tensor, one index per row. ``None``, ``NaN`` and ``pd.NA`` (what ``pd.concat``
        of single-task tables writes) all mean "no label" and become ``IGNORE_INDEX``.

    Raises:
        ValueError: no such column, or a label outside ``labels``.
    """
    if task not in frame.columns:
        raise ValueError(f"No column {task!r} to encode.")
    missing = frame[task].isna().to_numpy()
    present = frame[task][~missing]
    check_labels(present, task, f"column {task!r}", labels)
    labels = TASK_LABELS[task] if labels is None else labels
    index = {label: i for i, label in enumerate(labels)}
    import torch

    return torch.tensor(
        [IGNORE_INDEX if absent else index[label] for label, absent in zip(frame[task], missing)], dtype=torch.long
    )
