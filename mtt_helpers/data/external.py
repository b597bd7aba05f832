"""The external public datasets, and the notebooks' choice between them and the bundled set.

* ``data_dir()``: the folder of the public datasets, laid out as ``<name>/train.csv`` and
  ``<name>/dev.csv`` with columns ``text,label``: ``MTT_DATA_DIR``'s folder, else the download cache
  (``~/.cache/mtt_helpers/data``, filled on first use), else ``None`` (the bundled set: offline, or
  ``MTT_DATA_DIR=bundled``). See :mod:`mtt_helpers.data.locate`.
* ``load_external(name, split)``: one public dataset from that folder. Which task it labels follows
  from its labels.
* ``load_task_data(split)``: topic and sentiment rows from the public datasets when there are any,
  else from the bundled set (:class:`TaskData`), with a one-line ``source`` saying which and why.
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
from mtt_helpers.data.locate import DataSource, locate_data
from mtt_helpers.data.settings import BUNDLED, DATA_DIR_ENV

TOPIC_DATASET = "huffpost_news_category"
"""External dataset the notebooks read topic labels from."""

SENTIMENT_DATASET = "tweeteval_sentiment"
"""External dataset the notebooks read sentiment labels from."""


def data_dir() -> Path | None:
    """The folder of the public datasets, or ``None`` for the bundled set (:func:`~mtt_helpers.data.locate.locate_data`).

    ``MTT_DATA_DIR``'s folder; unset, the download cache, downloaded and built on first use; ``None``
    when ``MTT_DATA_DIR=bundled`` or the machine is offline.

    Raises:
        FileNotFoundError: the variable names something that is not a folder.
    """
    return locate_data().folder


def load_external(name: str, split: str = "train", folder: str | os.PathLike | None = None) -> pd.DataFrame:
    """Loads one split of an external dataset (``<folder>/<name>/<split>.csv``).

    Args:
        name: Dataset folder, e.g. ``"tweeteval_sentiment"``.
        split: ``"train"`` or ``"dev"`` (test splits are held back).
        folder: Overrides :func:`data_dir`.

    Returns:
        A DataFrame with columns ``text, label``; ``attrs["task"]`` names the task it
        labels and ``attrs["dropped_empty"]`` counts dropped empty texts.
    """
    root = Path(folder) if folder is not None else data_dir()
    if root is None:
        raise FileNotFoundError(f"No public datasets: the bundled set is in use; set {DATA_DIR_ENV} to their "
                                f"folder (not {BUNDLED!r}), go online to download them, or pass folder=.")
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
    """``True``: read from the public datasets (:func:`data_dir`); ``False``: the bundled set."""
    bundled: pd.DataFrame | None = None
    """The bundled rows, each with both labels, when both tasks use the same bundled rows; else ``None``."""
    source: str = ""
    """One line for the reader: which data this is and where it came from (a folder, the download
    cache, a fresh download, or the bundled set and why)."""

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
    """The notebooks' "public datasets if there are any, else the bundled set" choice, in one place.

    With a folder of public datasets (``folder``, ``MTT_DATA_DIR``, or the download cache, filled on
    first use: :func:`data_dir`), topic rows come from HuffPost and sentiment rows from TweetEval;
    otherwise (``MTT_DATA_DIR=bundled``, or offline) both come from the bundled set's ``split``.

    Args:
        split: ``"train"`` or ``"dev"`` (``"test"`` too for the bundled set only).
        max_per_task: External data only: a seeded stratified sample of at most this many rows per
            task, or ``{"topic": n}`` / ``{"sentiment": n}`` to sample one task only.
        seed: Seed of those samples and of the bundled shuffle.
        disjoint_bundled: Bundled data only: shuffle the split (``seed``) and give the first half
            to topic and the second half to sentiment, so no sentence is seen with both labels
            (what single-task datasets look like). Otherwise both tasks use every row.
        folder: A folder of public datasets; overrides :func:`data_dir`.

    Returns:
        A :class:`TaskData`; ``real`` says which source was used and ``source`` says it in one line.
    """
    limits = max_per_task if isinstance(max_per_task, dict) else dict.fromkeys(TASK_LABELS, max_per_task)
    unknown = sorted(set(limits) - set(TASK_LABELS))
    if unknown:
        raise ValueError(f"max_per_task names unknown task(s) {unknown}; expected {list(TASK_LABELS)}.")
    found = DataSource(Path(folder), f"from {folder}") if folder is not None else locate_data()
    if found.folder is not None:
        frames = {"topic": load_external(TOPIC_DATASET, split, found.folder),
                  "sentiment": load_external(SENTIMENT_DATASET, split, found.folder)}
        for task, frame in frames.items():
            if limits.get(task):
                frames[task] = stratified_sample(frame, limits[task], seed=seed)
        source = f"Data: HuffPost headlines (topic) and TweetEval tweets (sentiment), {split} split, {found.origin}."
        return TaskData(frames["topic"], frames["sentiment"], real=True, source=source)
    source = f"Data: the bundled sentences (written with a language model), {split} split, {found.origin}."
    rows = load_bundled(split)
    as_task = {task: (lambda part, task=task: part[["text", task]].rename(columns={task: "label"})) for task in TASK_LABELS}
    if disjoint_bundled:
        shuffled = rows.sample(frac=1.0, random_state=seed)
        half = len(shuffled) // 2
        return TaskData(as_task["topic"](shuffled[:half]), as_task["sentiment"](shuffled[half:]), real=False, source=source)
    return TaskData(as_task["topic"](rows), as_task["sentiment"](rows), real=False, bundled=rows, source=source)
