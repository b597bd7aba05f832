"""The bundled dataset: 1,800 sentences, each labelled with a topic **and** a sentiment, with a fixed split.

``mtt_helpers/data_files/multitask_sentences.csv`` is package data, so it ships in the wheel. The
sentences were written for this tutorial by language-model helpers (data card: ``data/README.md``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from mtt_helpers.data.csv_reader import drop_empty_texts, read_required_csv
from mtt_helpers.data.labels import TASK_LABELS, check_labels

BUNDLED_CSV = Path(__file__).resolve().parent.parent / "data_files" / "multitask_sentences.csv"
"""The project's own jointly labelled dataset, shipped inside the package (data card: ``data/README.md``)."""

SPLITS = ("train", "dev", "test")
"""The bundled set's splits."""


def load_bundled(split: str | None = None, path: str | os.PathLike = BUNDLED_CSV) -> pd.DataFrame:
    """Loads the bundled jointly labelled sentences.

    Args:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``None`` for all rows.
        path: The CSV; defaults to :data:`BUNDLED_CSV` (inside the installed package).

    Returns:
        A DataFrame with columns ``text, topic, sentiment, split``.
    """
    path = Path(path)
    frame = read_required_csv(path, ["text", "topic", "sentiment", "split"])
    frame = drop_empty_texts(frame, str(path))
    for task in TASK_LABELS:
        check_labels(frame[task], task, str(path))
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
        frame = frame.loc[frame["split"] == split].reset_index(drop=True)
    return frame[["text", "topic", "sentiment", "split"]]
