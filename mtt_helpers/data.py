"""Datasets for the tutorial: the bundled jointly labelled set and the external public ones.

* ``load_bundled()``: ``mtt_helpers/data_files/multitask_sentences.csv`` (package data, so it
  ships in the wheel), 1,800 sentences written for this tutorial by language-model helpers (see
  ``data/README.md``), each labelled with a topic **and** a sentiment, with a fixed
  train/dev/test split.
* ``load_external(name, split)``: a public dataset from the folder named by the
  ``MTT_DATA_DIR`` environment variable, laid out as ``<name>/train.csv`` and
  ``<name>/dev.csv`` with columns ``text,label``. Which task it labels follows from its labels.
* ``multitask_frame(...)``: stacks single-task datasets into one table with a column per
  task, where a missing label is ``None`` (``IGNORE_INDEX`` once encoded, skipped by the loss).
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from mtt_helpers.config import SENTIMENT_LABELS, TOPIC_LABELS
from mtt_helpers.utils import InputWarning

DATA_DIR_ENV = "MTT_DATA_DIR"
"""Environment variable naming the folder of external datasets (CI: ``../shared/data``)."""

BUNDLED_CSV = Path(__file__).resolve().parent / "data_files" / "multitask_sentences.csv"
"""The project's own jointly labelled dataset, shipped inside the package (data card: ``data/README.md``)."""

TASK_LABELS: dict[str, list[str]] = {"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS}
"""Label set of each task, in head order."""

IGNORE_INDEX = -100
"""Encoded label of a task an example is not labelled for; ``cross_entropy`` skips it."""

SPLITS = ("train", "dev", "test")


def read_text_csv(path: str | os.PathLike) -> tuple[pd.DataFrame, list[int]]:
    """Reads a CSV exactly as written: every field a string, every row as wide as the header.

    ``pandas.read_csv`` guesses: a row with one field more than the header (a text with an
    unquoted comma) silently turns the first field into the index, so "Great game, we won" would
    become " we won". Here such a row is an error that names its line.

    Args:
        path: A UTF-8 CSV file (a byte-order mark is allowed) with a header row.

    Returns:
        ``(frame, lines)``: the table (blank lines skipped) and, per row, the physical line
        (1-based) its record starts on, counting the lines inside multi-line quoted fields.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: naming the file (and line): not UTF-8, empty, a duplicate column name, a row
            with more or fewer fields than the header, or malformed quoting.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text ({error}); save the file as UTF-8.") from error
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    end_of_previous = 0
    previous_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # one long text is fine
    try:
        for record in reader:
            start, end_of_previous = end_of_previous + 1, reader.line_num
            if not record:
                continue  # a blank line, which pandas skips too
            if header is None:
                header = record
                duplicates = sorted({name for name in header if header.count(name) > 1})
                if duplicates:
                    raise ValueError(f"{path}, line {start}: duplicate column name(s) {duplicates}.")
            elif len(record) != len(header):
                raise ValueError(
                    f"{path}, line {start}: {len(record)} field(s), but the header has {len(header)} "
                    f"({','.join(header)}). Quote a text that contains a comma: \"Great game, we won\"."
                )
            else:
                rows.append(record)
                lines.append(start)
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {error}") from error
    finally:
        csv.field_size_limit(previous_limit)
    if header is None:
        raise ValueError(f"Data file is empty: {path}")
    return pd.DataFrame(rows, columns=header, dtype=str), lines


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """Reads a CSV (see :func:`read_text_csv`) and checks it has rows and the required columns."""
    frame, _ = read_text_csv(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} is missing column(s) {missing}; it has {list(frame.columns)}.")
    if frame.empty:
        raise ValueError(f"Data file has a header but no rows: {path}")
    return frame


def _drop_empty_texts(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drops empty and whitespace-only texts, counts them in ``attrs`` and warns."""
    frame = frame.copy()
    frame["text"] = frame["text"].str.strip()
    empty = frame["text"].eq("")
    if empty.any():
        # InputWarning, not UserWarning: quiet() hides UserWarning, and this one is about the user's data.
        warnings.warn(f"{source}: dropped {int(empty.sum())} empty or whitespace-only text(s).", InputWarning, stacklevel=3)
    frame = frame.loc[~empty].reset_index(drop=True)
    frame.attrs["dropped_empty"] = int(empty.sum())
    return frame


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


def load_bundled(split: str | None = None, path: str | os.PathLike = BUNDLED_CSV) -> pd.DataFrame:
    """Loads the bundled jointly labelled sentences.

    Args:
        split: ``"train"``, ``"dev"``, ``"test"`` or ``None`` for all rows.
        path: The CSV; defaults to :data:`BUNDLED_CSV` (inside the installed package).

    Returns:
        A DataFrame with columns ``text, topic, sentiment, split``.
    """
    path = Path(path)
    frame = _read_csv(path, ["text", "topic", "sentiment", "split"])
    frame = _drop_empty_texts(frame, str(path))
    for task in TASK_LABELS:
        check_labels(frame[task], task, str(path))
    if split is not None:
        if split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}; expected one of {SPLITS}.")
        frame = frame.loc[frame["split"] == split].reset_index(drop=True)
    return frame[["text", "topic", "sentiment", "split"]]


def data_dir() -> Path | None:
    """The external-data folder from ``MTT_DATA_DIR``, or ``None`` when it is not set.

    Raises:
        FileNotFoundError: the variable is set but the folder does not exist.
    """
    value = os.environ.get(DATA_DIR_ENV, "").strip()
    if not value:
        return None
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{DATA_DIR_ENV}={value!r} is not a folder.")
    return folder


def load_external(name: str, split: str = "train", folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """Loads one split of an external dataset (``<folder>/<name>/<split>.csv``).

    Args:
        name: Dataset folder, e.g. ``"tweeteval_sentiment"``.
        split: ``"train"`` or ``"dev"`` (test splits are held back).
        folder: Overrides ``MTT_DATA_DIR``.

    Returns:
        A DataFrame with columns ``text, label``; ``attrs["task"]`` names the task it
        labels and ``attrs["dropped_empty"]`` counts dropped empty texts.
    """
    root = Path(folder) if folder is not None else data_dir()
    if root is None:
        raise FileNotFoundError(f"No external data folder: set {DATA_DIR_ENV} or pass folder=.")
    path = root / name / f"{split}.csv"
    frame = _read_csv(path, ["text", "label"])
    frame = _drop_empty_texts(frame, str(path))[["text", "label"]]
    dropped = frame.attrs.get("dropped_empty", 0)
    task = infer_task(frame["label"], str(path))
    frame.attrs.update(task=task, name=name, split=split, dropped_empty=dropped)
    return frame


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
    return torch.tensor(
        [IGNORE_INDEX if absent else index[label] for label, absent in zip(frame[task], missing)], dtype=torch.long
    )


TOPIC_DATASET = "huffpost_news_category"
"""External dataset the notebooks read topic labels from."""

SENTIMENT_DATASET = "tweeteval_sentiment"
"""External dataset the notebooks read sentiment labels from."""


@dataclass
class TaskData:
    """One split of topic and sentiment examples, from the external datasets or the bundled set."""

    topic: pd.DataFrame
    """``text, label`` rows labelled with a topic."""
    sentiment: pd.DataFrame
    """``text, label`` rows labelled with a sentiment."""
    real: bool
    """``True``: read from the external datasets (``MTT_DATA_DIR``); ``False``: the bundled set."""
    bundled: pd.DataFrame | None = None
    """The bundled rows, each with both labels, when both tasks use the same bundled rows; else ``None``."""

    def multitask(self) -> pd.DataFrame:
        """One table for training or evaluation (:func:`multitask_frame`).

        Bundled rows that carry both labels stay one row each; otherwise the two tasks' rows are
        stacked, each with one label.
        """
        if self.bundled is not None:
            return multitask_frame(bundled=self.bundled)
        return multitask_frame(topic=self.topic, sentiment=self.sentiment)


def load_task_data(
    split: str,
    max_per_task: int | dict[str, int] | None = None,
    seed: int = 0,
    disjoint_bundled: bool = False,
    folder: str | os.PathLike | None = None,
) -> TaskData:
    """The notebooks' "real data if configured, else the bundled set" choice, in one place.

    With ``MTT_DATA_DIR`` set (or ``folder`` given), topic rows come from HuffPost and sentiment
    rows from TweetEval; otherwise both come from the bundled set's ``split``.

    Args:
        split: ``"train"`` or ``"dev"`` (``"test"`` too for the bundled set only).
        max_per_task: External data only: a seeded stratified sample of at most this many rows per
            task, or ``{"topic": n}`` / ``{"sentiment": n}`` to sample one task only.
        seed: Seed of those samples and of the bundled shuffle.
        disjoint_bundled: Bundled data only: shuffle the split (``seed``) and give the first half
            to topic and the second half to sentiment, so no sentence is seen with both labels
            (what single-task datasets look like). Otherwise both tasks use every row.
        folder: Overrides ``MTT_DATA_DIR``.

    Returns:
        A :class:`TaskData`; ``real`` says which source was used.
    """
    limits = max_per_task if isinstance(max_per_task, dict) else dict.fromkeys(TASK_LABELS, max_per_task)
    unknown = sorted(set(limits) - set(TASK_LABELS))
    if unknown:
        raise ValueError(f"max_per_task names unknown task(s) {unknown}; expected {list(TASK_LABELS)}.")
    root = Path(folder) if folder is not None else data_dir()
    if root is not None:
        frames = {"topic": load_external(TOPIC_DATASET, split, root),
                  "sentiment": load_external(SENTIMENT_DATASET, split, root)}
        for task, frame in frames.items():
            if limits.get(task):
                frames[task] = stratified_sample(frame, limits[task], seed=seed)
        return TaskData(frames["topic"], frames["sentiment"], real=True)
    rows = load_bundled(split)
    as_task = {task: (lambda part, task=task: part[["text", task]].rename(columns={task: "label"})) for task in TASK_LABELS}
    if disjoint_bundled:
        shuffled = rows.sample(frac=1.0, random_state=seed)
        half = len(shuffled) // 2
        return TaskData(as_task["topic"](shuffled[:half]), as_task["sentiment"](shuffled[half:]), real=False)
    return TaskData(as_task["topic"](rows), as_task["sentiment"](rows), real=False, bundled=rows)
