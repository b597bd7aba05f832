"""Scoring a model on labelled rows: per-task metrics, the dev loss, and the score early stopping maximises."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, recall_score

from mtt_helpers.data import encode_labels
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode

MAIN_METRIC = {"topic": "macro_f1", "sentiment": "macro_recall"}
"""Metric each task is selected on: macro-F1 for topic, macro recall (TweetEval's official) for sentiment."""


def task_metrics(
    y_true: list[str] | np.ndarray, y_pred: list[str] | np.ndarray, labels: list[str] | None = None
) -> dict[str, float]:
    """Accuracy, macro-F1 and macro recall (scikit-learn), macro-averaged over ``labels``."""
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "macro_recall": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }


def task_logits(
    model: MultiTaskSentenceTransformer, texts: list[str] | None, task: str, embeddings: torch.Tensor | None = None
) -> torch.Tensor:
    """One task's logits (float32, CPU), from texts or from precomputed embeddings.

    Runs in eval mode and restores each module's mode afterwards.
    """
    with eval_mode(model), torch.no_grad():
        if embeddings is not None:
            return model.heads[task](embeddings.to(model.device)).float().cpu()
        return model.predict_logits(texts)[task].float().cpu()


def predict_labels(
    model: MultiTaskSentenceTransformer, texts: list[str] | None, task: str, embeddings: torch.Tensor | None = None
) -> list[str]:
    """Predicted label names for one task, from texts or from precomputed embeddings."""
    labels = model.config.tasks[task]
    return [labels[i] for i in task_logits(model, texts, task, embeddings).argmax(dim=1).tolist()]


def evaluate(
    model: MultiTaskSentenceTransformer, frame: pd.DataFrame, tasks: list[str] | None = None,
    embeddings: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per task on the rows of ``frame`` labelled for that task.

    Args:
        model: The model.
        frame: Columns ``text`` and one per task (``None``/``NaN`` where unlabelled).
        tasks: Tasks to score; default every model task with a column in ``frame``.
        embeddings: Precomputed embeddings of ``frame.text`` (frozen encoder), optional.

    Returns:
        Task -> accuracy, macro-F1, macro recall (:func:`task_metrics`) and ``loss``: the mean
        cross-entropy, the quantity training minimises, so it can be plotted beside the train loss.
    """
    tasks = tasks or [t for t in model.task_names if t in frame.columns]
    results = {}
    for task in tasks:
        mask = frame[task].notna().to_numpy()
        if not mask.any():
            continue
        texts = frame["text"][mask].tolist()
        sub_embeddings = embeddings[torch.tensor(mask)] if embeddings is not None else None
        logits = task_logits(model, texts, task, sub_embeddings)
        labels = model.config.tasks[task]
        predicted = [labels[i] for i in logits.argmax(dim=1).tolist()]
        results[task] = task_metrics(frame[task][mask].tolist(), predicted, labels)
        targets = encode_labels(frame.loc[mask], task, labels)
        results[task]["loss"] = F.cross_entropy(logits, targets).item()
    return results


def dev_score(metrics: dict[str, dict[str, float]]) -> float:
    """Mean over tasks of each task's main metric: what early stopping maximises."""
    return float(np.mean([metrics[task][MAIN_METRIC.get(task, "macro_f1")] for task in metrics]))
