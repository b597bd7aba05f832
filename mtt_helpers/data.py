"""The chapters' data: the bundled sentences, the public datasets, and the tables training reads.

* :func:`load_bundled`: 1,800 sentences written for this tutorial with a language model, each
  labelled with a topic **and** a sentiment, with a fixed split; shipped inside the package.
* :func:`load_external` and :func:`load_task_data`: the public datasets (real text written by
  people) from a folder holding ``<name>/train.csv`` and ``dev.csv``, or the bundled set when there
  is no folder. Where that folder comes from (``MTT_DATA_DIR``, or the download cache filled on first
  use) is production's business: ``mtt.data.locate_data``.
* :func:`multitask_frame`: single-task datasets stacked into one table, a column per task, ``None``
  where a row has no label for a task; :func:`encode_labels` turns a column into class ids, with
  :data:`IGNORE_INDEX` where there is no label (the masked loss skips those).
* :func:`stratified_sample`, :func:`validation_split`, :func:`class_counts`: seeded samples and slices.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from mtt_core.csv_files import drop_empty_texts, read_required_csv
from mtt_core.labels import SENTIMENT_DATASET, TASK_LABELS, TOPIC_DATASET, check_labels, infer_task

BUNDLED_CSV = Path(__file__).resolve().parent / "data_files" / "multitask_sentences.csv"
"""The project's own jointly labelled dataset, shipped inside the package (data card: ``data/README.md``)."""

SPLITS = ("train", "dev", "test")
"""The bundled set's splits."""

IGNORE_INDEX = -100
"""Encoded label of a task a row is not labelled for; ``F.cross_entropy(..., ignore_index=-100)`` skips it."""


def load_bundled(split: str | None = None, path: str | os.PathLike = BUNDLED_CSV) -> pd.DataFrame:
    """The bundled sentences (written with a language model): ``text, topic, sentiment, split``.

    Args:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``None`` for all rows.
        path: The CSV; default :data:`BUNDLED_CSV`.
    """
    path = Path(path)
    frame = drop_empty_texts(read_required_csv(path, ["text", "topic", "sentiment", "split"]), str(path))
    for task in TASK_LABELS:
        check_labels(frame[task], task, str(path))
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
        frame = frame.loc[frame["split"] == split].reset_index(drop=True)
    return frame[["text", "topic", "sentiment", "split"]]


def load_external(name: str, split: str, folder: str | os.PathLike) -> pd.DataFrame:
    """One split of a public dataset: ``<folder>/<name>/<split>.csv`` as ``text, label``.

    Args:
        name: Dataset folder, e.g. ``"tweeteval_sentiment"`` (``mtt_core.labels`` names them).
        split: ``"train"`` or ``"dev"`` (test splits are held back).
        folder: The folder of public datasets.

    Returns:
        ``attrs["task"]`` names the task its labels belong to; ``attrs["dropped_empty"]`` counts empty texts dropped.
    """
    path = Path(folder).expanduser() / name / f"{split}.csv"
    frame = drop_empty_texts(read_required_csv(path, ["text", "label"]), str(path))[["text", "label"]]
    frame.attrs.update(task=infer_task(frame["label"], str(path)), name=name, split=split)
    return frame


@dataclass
class TaskData:
    """One split of topic and sentiment examples, from the public datasets or the bundled set."""

    topic: pd.DataFrame
    """``text, label`` rows labelled with a topic."""
    sentiment: pd.DataFrame
    """``text, label`` rows labelled with a sentiment."""
    real: bool
    """``True``: the public datasets; ``False``: the bundled set."""
    bundled: pd.DataFrame | None = None
    """The bundled rows, each with both labels, when both tasks use the same bundled rows; else ``None``."""
    source: str = ""
    """What this data is, in a sentence for the reader."""

    def multitask(self) -> pd.DataFrame:
        """One table for training or scoring (:func:`multitask_frame`): bundled rows that carry both
        labels stay one row each; otherwise the two tasks' rows are stacked, each with one label."""
        if self.bundled is not None:
            return multitask_frame(bundled=self.bundled)
        return multitask_frame(topic=self.topic, sentiment=self.sentiment)


def load_task_data(split: str, folder: str | os.PathLike | None = None, max_per_task: int | None = None,
                   seed: int = 0, disjoint_bundled: bool = False) -> TaskData:
    """Topic rows from HuffPost and sentiment rows from TweetEval in ``folder``; without a folder, the bundled set.

    Args:
        split: ``"train"`` or ``"dev"`` (``"test"`` too for the bundled set).
        folder: The folder of public datasets (``mtt.data.locate_data()`` finds it); ``None``: the bundled set.
        max_per_task: Public data only: a seeded stratified sample of at most this many rows per task.
        seed: Seed of those samples and of the bundled shuffle.
        disjoint_bundled: Bundled data only: the first half of the shuffled split keeps its topic label,
            the second half its sentiment label, as two single-task datasets would. Otherwise both
            tasks use every row.
    """
    if folder is not None:
        frames = {"topic": load_external(TOPIC_DATASET, split, folder),
                  "sentiment": load_external(SENTIMENT_DATASET, split, folder)}
        if max_per_task:
            frames = {task: stratified_sample(frame, max_per_task, seed=seed) for task, frame in frames.items()}
        rebuilt = (" TweetEval's training tweets are the SemEval 2013-2016 pool TweetEval drew its own from, "
                   "rebuilt by the project's data build (its data card says how)." if split == "train" else "")
        source = (f"Data: HuffPost headlines (topic) and TweetEval tweets (sentiment), {split} split: real text "
                  f"written by people, from {folder}.{rebuilt}")
        return TaskData(frames["topic"], frames["sentiment"], real=True, source=source)
    source = f"Data: the bundled sentences (written with a language model for this tutorial), {split} split."
    rows = load_bundled(split)
    as_task = {task: (lambda part, task=task: part[["text", task]].rename(columns={task: "label"})) for task in TASK_LABELS}
    if disjoint_bundled:
        shuffled = rows.sample(frac=1.0, random_state=seed)
        half = len(shuffled) // 2
        return TaskData(as_task["topic"](shuffled[:half]), as_task["sentiment"](shuffled[half:]), real=False,
                        source=source)
    return TaskData(as_task["topic"](rows), as_task["sentiment"](rows), real=False, bundled=rows, source=source)


def multitask_frame(task_labels: Mapping[str, list[str]] | None = None, **task_frames: pd.DataFrame) -> pd.DataFrame:
    """Stacks datasets into one table with one label column per task.

    Each keyword is a task name. Its frame either has a ``label`` column (a single-task dataset) or
    already has a column per task (the bundled set). A task a row is not labelled for is ``None``.

    Args:
        task_labels: Label sets of tasks beyond topic and sentiment, e.g. ``{"finance": SENTIMENT_LABELS}``.
        **task_frames: Task name (or, for a frame with task columns, any name) -> its rows.

    Example:
        ``multitask_frame(topic=huffpost_train, sentiment=tweets_train)``

    Returns:
        ``text``, ``source`` (the keyword each row came from) and one column per task.
    """
    if not task_frames:
        raise ValueError("Pass at least one dataset, e.g. multitask_frame(topic=frame).")
    labels = {**TASK_LABELS, **(task_labels or {})}
    parts = []
    for key, frame in task_frames.items():
        if "label" in frame.columns:
            if key not in labels:
                raise ValueError(f"Unknown task {key!r}; expected one of {list(labels)} (or pass its task_labels).")
            check_labels(frame["label"], key, key, labels[key])
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
    tasks = [task for task in labels if task in TASK_LABELS or task in combined.columns]
    for task in tasks:
        if task not in combined.columns:
            combined[task] = None
        combined[task] = combined[task].astype(object).where(combined[task].notna(), None)
    return combined[["text", "source", *tasks]]


def encode_labels(frame: pd.DataFrame, task: str, labels: list[str] | None = None) -> torch.Tensor:
    """Label names -> class ids for ``task``; no label (``None``, ``NaN``, ``pd.NA``) -> :data:`IGNORE_INDEX`.

    Args:
        frame: A table with a ``task`` column.
        task: The column to encode.
        labels: The class labels in head order: pass the model's own (``model.config.tasks[task]``),
            so encoding and decoding can never disagree. ``None`` uses ``TASK_LABELS[task]``.

    Returns:
        A ``long`` tensor on the CPU, one id per row.

    Raises:
        ValueError: no such column, or a label outside ``labels``.
    """
    if task not in frame.columns:
        raise ValueError(f"No column {task!r} to encode.")
    missing = frame[task].isna().to_numpy()
    check_labels(frame[task][~missing], task, f"column {task!r}", labels)
    labels = TASK_LABELS[task] if labels is None else labels
    index = {label: i for i, label in enumerate(labels)}
    return torch.tensor([IGNORE_INDEX if absent else index[label] for label, absent in zip(frame[task], missing)],
                        dtype=torch.long)


def class_counts(labels: pd.Series, task: str | None = None) -> pd.DataFrame:
    """Count and share of each class, in the task's label order when ``task`` is given."""
    counts = labels.value_counts()
    if task is not None:
        counts = counts.reindex(TASK_LABELS[task], fill_value=0)
    return pd.DataFrame({"count": counts, "share": (counts / counts.sum()).round(3)})


def stratified_sample(frame: pd.DataFrame, n: int, label_column: str = "label", seed: int = 0) -> pd.DataFrame:
    """``n`` rows with the class proportions of ``frame``, reproducibly (index reset).

    Uses scikit-learn's stratified split. Where that split is impossible (fewer rows left over than
    there are classes, or a class with a single row), each class gets its proportional share by
    largest remainders, drawn within the class: still exactly ``n`` rows.

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
        exact = counts * n / len(frame)
        quota = np.floor(exact).astype(int)
        quota[(exact - quota).sort_values(ascending=False, kind="stable").index[: n - int(quota.sum())]] += 1
        parts = [frame[frame[label_column] == label].sample(n=int(k), random_state=seed) for label, k in quota.items()]
        return pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    sample, _ = train_test_split(frame, train_size=n, stratify=frame[label_column], random_state=seed)
    return sample.reset_index(drop=True)


def validation_split(frame: pd.DataFrame, size: int | float, seed: int = 0,
                     label_column: str = "label") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Carves a seeded, stratified validation slice out of training rows: ``(train, validation)``.

    The two parts share no row and together hold every row of ``frame``, each in its original order and index.

    Args:
        size: Validation rows (an int, at least one per class), or a share of ``frame`` (a float in (0, 1)).

    Raises:
        ValueError: no such column, or a size that leaves no training row or cannot hold one row per class.
    """
    if label_column not in frame.columns:
        raise ValueError(f"No column {label_column!r}; columns are {list(frame.columns)}.")
    classes = frame[label_column].nunique()
    if isinstance(size, float):
        if not 0 < size < 1:
            raise ValueError(f"A validation share must be in (0, 1), got {size}.")
        size = max(round(size * len(frame)), classes)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not classes <= size < len(frame):
        raise ValueError(f"A validation slice of {size!r} rows out of {len(frame)} must hold one row per class "
                         f"({classes}) and leave training rows.")
    numbered = frame.assign(_position=np.arange(len(frame)))
    chosen = np.zeros(len(frame), dtype=bool)
    chosen[stratified_sample(numbered, int(size), label_column, seed)["_position"].to_numpy()] = True
    return frame[~chosen], frame[chosen]


def sample_fingerprint(frame: pd.DataFrame, label_column: str = "label") -> str:
    """Names a labelled sample: 16 hex digits of the SHA-256 of its rows in order (``text<TAB>label``),
    so a benchmark's file can show which sample a run was made from."""
    missing = [c for c in ("text", label_column) if c not in frame.columns]
    if missing:
        raise ValueError(f"No column(s) {missing}; columns are {list(frame.columns)}.")
    digest = hashlib.sha256()
    for text, label in zip(frame["text"], frame[label_column]):
        digest.update(f"{text}\t{label}\n".encode())
    return digest.hexdigest()[:16]
