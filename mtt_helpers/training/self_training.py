"""Self-training: use plentiful *unlabelled* text when a task has few labels.

1. Train the head on the few labelled examples (frozen encoder, cached embeddings).
2. Predict the unlabelled texts; keep, per predicted class, the most confident ones above a
   probability threshold (the same number per class at most, so the majority class does not
   swamp the others). These are *pseudo-labels*.
3. Train the head again, from the same starting weights, on labelled + pseudo-labelled rows.
   Repeat for more rounds if asked.

It can only help as far as the pseudo-labels are right: :func:`self_train` returns them so
you can check them against the true labels when you have those (as the tutorial does).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import pandas as pd
import torch

from mtt_helpers.data import multitask_frame
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode
from mtt_helpers.training.cache_embeddings import cached_embeddings
from mtt_helpers.training.config import TrainConfig
from mtt_helpers.training.result import TrainResult
from mtt_helpers.training.freezing import truncated_to
from mtt_helpers.training.loop import train


@dataclass
class SelfTrainingConfig:
    """How pseudo-labels are chosen."""

    threshold: float = 0.7
    """Keep a pseudo-label only when the head's probability for it is at least this."""

    per_class: int = 200
    """Keep at most this many pseudo-labels per predicted class, the most confident first."""

    rounds: int = 1
    """Pseudo-label, retrain; repeated this many times (each round re-labels the pool)."""

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}.")
        if self.per_class < 1 or self.rounds < 1:
            raise ValueError("per_class and rounds must be >= 1.")


def pseudo_labels(
    model: MultiTaskSentenceTransformer, texts: list[str], task: str, config: SelfTrainingConfig,
    cache_dir: str | None = None, precision: str = "auto",
) -> pd.DataFrame:
    """The confident predictions of the ``task`` head on ``texts``, balanced per class.

    The model's train/eval modes are restored afterwards. ``cache_dir`` and ``precision`` are
    passed to :func:`cached_embeddings`.

    Returns:
        Columns ``text``, ``label`` (the predicted class) and ``confidence``, most confident first.
    """
    if not texts:
        raise ValueError("No unlabelled texts to pseudo-label.")
    vectors = cached_embeddings(model, texts, cache_dir, precision=precision)
    with eval_mode(model), torch.no_grad():
        probabilities = torch.softmax(model.heads[task](vectors.to(model.device)).float(), dim=1).cpu()
    confidence, predicted = probabilities.max(dim=1)
    frame = pd.DataFrame({
        "text": texts,
        "label": [model.config.tasks[task][i] for i in predicted.tolist()],
        "confidence": confidence.numpy(),
    })
    frame = frame.drop_duplicates("text")
    frame = frame[frame["confidence"] >= config.threshold].sort_values("confidence", ascending=False, kind="stable")
    return frame.groupby("label", sort=False).head(config.per_class).reset_index(drop=True)


def self_train(
    model: MultiTaskSentenceTransformer,
    labelled: pd.DataFrame,
    unlabelled_texts: list[str],
    task: str,
    train_config: TrainConfig,
    config: SelfTrainingConfig | None = None,
) -> tuple[TrainResult, pd.DataFrame]:
    """Trains the ``task`` head on ``labelled`` (``text``, ``label``), then on labelled +
    pseudo-labelled unlabelled texts, in place. The encoder stays frozen.

    Args:
        model: The model; its ``task`` head is trained from its current weights.
        labelled: The few labelled examples.
        unlabelled_texts: The pool to pseudo-label (texts in ``labelled`` are skipped).
        task: The head to train.
        train_config: Schedule of every training run (``trainable_encoder_layers`` must be 0;
            ``tasks`` is set to ``[task]``).
        config: Threshold, per-class cap and rounds.

    Returns:
        The last training run's result, and the pseudo-labels it used (``text``, ``label``,
        ``confidence``). Each retraining starts the head from the weights it had before the
        first run, so pseudo-labels are learned afresh, not on top of the labelled-only head.
    """
    config = config or SelfTrainingConfig()
    if train_config.trainable_encoder_layers != 0:
        raise ValueError("self_train keeps the encoder frozen: set trainable_encoder_layers=0.")
    if task not in model.config.tasks:
        raise ValueError(f"Unknown task {task!r}; the model has {model.task_names}.")
    train_config = dataclasses.replace(train_config, tasks=[task])
    start = copy.deepcopy(model.heads[task].state_dict())
    result = train(model, multitask_frame(**{task: labelled}), None, train_config)
    known = set(labelled["text"])
    pool = [text for text in unlabelled_texts if text not in known]
    pseudo = pd.DataFrame(columns=["text", "label", "confidence"])
    for _ in range(config.rounds if pool else 0):
        with truncated_to(model, train_config.max_seq_length):  # the embeddings training cached
            pseudo = pseudo_labels(model, pool, task, config, train_config.cache_dir, train_config.precision)
        if pseudo.empty:
            break  # nothing confident enough: keep the head trained on the labels alone
        model.heads[task].load_state_dict(start)
        combined = pd.concat([labelled[["text", "label"]], pseudo[["text", "label"]]], ignore_index=True)
        result = train(model, multitask_frame(**{task: combined}), None, train_config)
    return result, pseudo
