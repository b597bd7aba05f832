"""The external public datasets, and the notebooks' choice between them and the bundled set.

* ``load_external(name, split)``: a public dataset from the folder named by the ``MTT_DATA_DIR``
  environment variable, laid out as ``<name>/train.csv`` and ``<name>/dev.csv`` with columns
  ``text,label``. Which task it labels follows from its labels.
* ``load_task_data(split)``: topic and sentiment rows from the external datasets when they are
  configured, else from the bundled set (:class:`TaskData`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mtt_helpers.data.bundled import load_bundled
from mtt_helpers.data.csv_reader import drop_empty_texts, read_required_csv
from mtt_helpers.data.frames import multitask_frame, stratified_sample
from mtt_helpers.data.labels import TASK_LABELS, infer_task

DATA_DIR_ENV = "MTT_DATA_DIR"
"""Environment variable naming the folder of external datasets (CI: ``../shared/data``)."""

TOPIC_DATASET = "huffpost_news_category"
"""External dataset the notebooks read topic labels from."""

SENTIMENT_DATASET = "tweeteval_sentiment"
"""External dataset the notebooks read sentiment labels from."""


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
    frame = read_required_csv(path, ["text", "label"])
    frame = drop_empty_texts(frame, str(path))[["text", "label"]]
    dropped = frame.attrs.get("dropped_empty", 0)
    task = infer_task(frame["label"], str(path))
    frame.attrs.update(task=task, name=name, split=split, dropped_empty=dropped)
    return frame


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
