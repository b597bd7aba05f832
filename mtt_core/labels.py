"""The two tasks, their labels, and the public datasets that label them: each name written once.

Every part of the project (the model's config, the data loaders, the data build, the command line)
reads the label sets and the dataset names from here.
"""

from __future__ import annotations

from collections.abc import Iterable

TOPIC_LABELS = ["sports", "health", "tech", "finance", "education", "other"]
"""Task A classes, in the order of the topic head's outputs."""

SENTIMENT_LABELS = ["negative", "neutral", "positive"]
"""Task B classes, in the order of the sentiment head's outputs."""

TASK_LABELS: dict[str, list[str]] = {"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS}
"""Label set of each task, in head order."""

TOPIC_DATASET = "huffpost_news_category"
"""HuffPost headlines, mapped onto the six topics."""

SENTIMENT_DATASET = "tweeteval_sentiment"
"""TweetEval tweets (SemEval-2017 Task 4A), labelled negative / neutral / positive."""

FINANCE_DATASET = "financial_phrasebank"
"""Financial PhraseBank sentences from financial news, with the same three sentiment labels."""

DATASET_TASKS = {SENTIMENT_DATASET: "sentiment", FINANCE_DATASET: "sentiment", TOPIC_DATASET: "topic"}
"""Each public dataset's folder name -> the task its labels belong to (the order the data build writes them in)."""


def check_labels(labels: Iterable[object], task: str, source: str, allowed: list[str] | None = None) -> None:
    """Raises ``ValueError`` naming every label outside ``allowed`` (default: ``task``'s label set).

    Args:
        labels: The labels found.
        task: The task they should belong to.
        source: What to call their origin in the message (a file, a column).
        allowed: The labels allowed; default ``TASK_LABELS[task]``.
    """
    if allowed is None:
        if task not in TASK_LABELS:
            raise ValueError(f"Unknown task {task!r}; expected one of {list(TASK_LABELS)}.")
        allowed = TASK_LABELS[task]
    unknown = sorted(set(labels) - set(allowed), key=str)
    if unknown:
        raise ValueError(f"{source}: label(s) {unknown} are not {task} labels {list(allowed)}.")


def infer_task(labels: Iterable[object], source: str) -> str:
    """The task whose label set holds every label in ``labels``.

    Raises:
        ValueError: no task's labels hold them all (the message names ``source``).
    """
    found = set(labels)
    for task, allowed in TASK_LABELS.items():
        if found <= set(allowed):
            return task
    raise ValueError(f"{source}: labels {sorted(found, key=str)} fit no task; expected a subset of one of {TASK_LABELS}.")
