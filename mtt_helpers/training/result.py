"""What a training run measured: :class:`TrainResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd


@dataclass
class TrainResult:
    """What :func:`train` measured."""

    history: pd.DataFrame
    """One row per epoch: train loss per task, the held-out split's metrics per task and its
    score (columns named after :attr:`selection_split`, e.g. ``dev_topic_macro_f1``,
    ``dev_score``), seconds."""

    best_epoch: int
    """The epoch whose weights were kept: the best :attr:`selection_split` score, or the last."""

    seconds: float
    """Wall time of the whole call, embedding cache included."""

    gradient_cosines: list[float] = field(default_factory=list)
    """Per step, cosine between the tasks' encoder gradients (``track_gradient_conflict``)."""

    precision: str = "fp32"
    """The precision the run used (``"auto"`` resolved)."""

    padded_token_ratio: float | None = None
    """Token positions run through the encoder (padding included) per real token, over all
    training steps; ``None`` when no tokens ran (frozen encoder). 1.0 means no padding."""

    selection_split: str | None = "dev"
    """What the held-out frame the epoch was picked on is called in the history (``"dev"``,
    ``"validation"``, ...); ``None``: there was none, and the last epoch was kept."""

    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    """Labelled rows per task of each split the run read: ``{"train": {...}, selection_split: {...}}``."""
