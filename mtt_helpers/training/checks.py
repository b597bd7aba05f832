"""What :func:`~mtt_helpers.training.train` checks before any work: tasks, texts, labels, the held-out
set and the token limit."""

from __future__ import annotations

import pandas as pd

from mtt_helpers.model import MultiTaskSentenceTransformer, encoder_token_limit
from mtt_helpers.training.config import TrainConfig

SHOWN_ROWS = 5
"""How many bad rows an error names before ``...``."""


def check_texts_column(frame: pd.DataFrame, name: str) -> None:
    """Raises ``ValueError`` naming the rows of ``frame`` whose ``text`` is not a non-empty string
    (``NaN``, a number, ``""``, blanks), or when there is no ``text`` column.

    Args:
        frame: A training or held-out table.
        name: What to call it in the message, e.g. ``"train_frame"``.
    """
    if "text" not in frame.columns:
        raise ValueError(f"{name} has no 'text' column; its columns are {list(frame.columns)}.")
    bad = [(position, label, text) for position, (label, text) in enumerate(frame["text"].items())
           if not (isinstance(text, str) and text.strip())]
    if bad:
        shown = ", ".join(f"row {position} (index {label!r}): {text!r}" for position, label, text in bad[:SHOWN_ROWS])
        more = " ..." if len(bad) > SHOWN_ROWS else ""
        raise ValueError(f"{name} has {len(bad)} empty or non-string text(s): {shown}{more}; drop or fix them first.")


def check_inputs(model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, dev_frame: pd.DataFrame | None,
                 tasks: list[str], config: TrainConfig) -> None:
    """Raises ``ValueError`` before any work when the tasks, training rows, held-out set or token
    limit cannot be used: every message names what to fix."""
    unknown = [task for task in tasks if task not in model.config.tasks or task not in train_frame.columns]
    if unknown:
        raise ValueError(f"Task(s) {unknown} are not both a model head and a column of train_frame.")
    if train_frame.empty:
        raise ValueError("train_frame has no rows.")
    check_texts_column(train_frame, "train_frame")
    unlabelled = [task for task in tasks if not train_frame[task].notna().any()]
    if unlabelled:
        raise ValueError(f"train_frame has no labelled row for task(s) {unlabelled}, whose head(s) would stay "
                         "untrained. Add labelled rows, or train the other task(s) only (TrainConfig(tasks=[...])).")
    limit = encoder_token_limit(model.encoder)
    if config.max_seq_length is not None and limit is not None and config.max_seq_length > limit:
        raise ValueError(f"max_seq_length={config.max_seq_length} is above the encoder's position limit ({limit}).")
    if dev_frame is None:
        return
    if "text" not in dev_frame.columns or dev_frame.empty:
        raise ValueError("dev_frame has no rows (or no 'text' column); pass dev_frame=None to train without a dev set.")
    check_texts_column(dev_frame, "dev_frame")
    unscored = [task for task in tasks if task not in dev_frame.columns or not dev_frame[task].notna().any()]
    if unscored:
        raise ValueError(f"dev_frame has no labels for trained task(s) {unscored}: their dev score would be "
                         "undefined. Add labelled dev rows, train fewer tasks, or pass dev_frame=None.")


def labelled_rows(frame: pd.DataFrame, tasks: list[str]) -> dict[str, int]:
    """Rows of ``frame`` labelled for each task."""
    return {task: int(frame[task].notna().sum()) if task in frame.columns else 0 for task in tasks}
