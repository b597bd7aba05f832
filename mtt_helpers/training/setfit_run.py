"""SetFit, the few-shot library, run as its documentation shows; and the pair budget of its defaults.

Chapter 04 and ``benchmarks/setfit_defaults.py`` both train SetFit through :func:`train_setfit`, so
the runs in the notebook and the slow runs in the results file are made by the same calls.
:func:`setfit_default_steps` says how many pair steps SetFit's defaults take for a labelled sample,
so a shorter run can be reported as a share of them.

The ``setfit`` package (the ``lowres`` extra) is imported only when a run starts.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtt_helpers.precision import PRECISION_SETTINGS, autocast_context, resolve_precision

logger = logging.getLogger(__name__)

DEFAULT_PAIR_BATCH = 16
"""SetFit's default batch size of the pair (embedding) phase: ``TrainingArguments.batch_size[0]``."""


def setfit_default_steps(labels: Sequence[object], batch_size: int = DEFAULT_PAIR_BATCH) -> int:
    """Pair steps SetFit's default ``TrainingArguments`` take on examples with these labels.

    The defaults (setfit 1.x: ``max_steps=-1``, ``num_iterations=None``,
    ``sampling_strategy="oversampling"``, ``num_epochs=(1, 16)``, ``batch_size=(16, 2)``) build
    every pair of examples, a text with itself included (same label: positive, else negative);
    oversampling repeats the smaller kind until both counts equal the larger; one epoch of
    batches of ``batch_size`` pairs follows.

    Raises:
        ValueError: fewer than two labels, or ``batch_size < 1``.
    """
    if len(labels) < 2 or batch_size < 1:
        raise ValueError(f"Need at least 2 labels and batch_size >= 1, got {len(labels)} labels, batch_size {batch_size}.")
    n = len(labels)
    positive = sum(count * (count + 1) // 2 for count in Counter(labels).values())
    negative = n * (n + 1) // 2 - positive
    return math.ceil(2 * max(positive, negative) / batch_size)


@dataclass
class SetFitRun:
    """A trained SetFit model, scored like the tutorial's models: its body embeds, its head predicts."""

    model: Any
    """The ``setfit.SetFitModel`` (body: a Sentence Transformer; head: logistic regression)."""
    steps: int
    """Pair steps the body was trained for (the trainer's own count)."""
    seconds: float
    """Wall time of loading and training."""
    precision: str
    """``"bf16"`` (autocast) or ``"fp32"``: what training and prediction ran under."""

    def predict_labels(self, texts: list[str], batch_size: int = 64) -> list:
        """The head's predicted label for each text."""
        with autocast_context(self.precision, self.model.model_body.device):
            return list(self.model.model_head.predict(self.model.model_body.encode(texts, batch_size=batch_size)))


def train_setfit(texts: list[str], labels: list[object], seed: int, max_steps: int = -1, precision: str = "fp32",
                 body: str | None = None) -> SetFitRun:
    """Trains SetFit as its documentation shows: ``SetFitModel.from_pretrained``, ``TrainingArguments``,
    a ``datasets.Dataset`` with ``text`` and ``label``, ``Trainer.train()``.

    Only what does not change training is set besides ``seed`` and ``max_steps``: a scratch output
    folder, no checkpoints, no logging, no progress bar. The default precision is SetFit's own on a
    CPU, fp32. ``precision="auto"`` wraps training and prediction in bf16 autocast where the hardware
    runs it natively, as chapter 04's own methods run; SetFit is not made for that, and on chapter
    04's n = 128 samples its 634-step default runs under bf16 labelled every dev tweet alike.

    Args:
        texts, labels: The labelled examples.
        seed: SetFit's ``seed`` (body initialisation order, pair shuffling, head).
        max_steps: Pair steps; ``-1`` keeps SetFit's default (:func:`setfit_default_steps`).
        precision: ``"fp32"`` (SetFit's own), ``"bf16"`` or ``"auto"`` (bf16 autocast where native).
        body: Model name or folder; default all-MiniLM-L6-v2 (the offline package when installed).

    Raises:
        ValueError: ``texts`` and ``labels`` differ in length, fewer than two classes,
            ``max_steps`` is neither -1 nor positive, or an unknown ``precision``.
    """
    if len(texts) != len(labels) or len(set(labels)) < 2:
        raise ValueError(f"Need as many labels as texts ({len(texts)} texts, {len(labels)} labels) and 2+ classes.")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"max_steps must be -1 (SetFit's default) or positive, got {max_steps}.")
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"precision must be one of {PRECISION_SETTINGS}, got {precision!r}.")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from mtt_helpers.model.encoder import default_model_source

    start = time.perf_counter()
    model = SetFitModel.from_pretrained(body or default_model_source()[0])
    device = model.model_body.device
    precision = resolve_precision(precision, device)
    with tempfile.TemporaryDirectory() as scratch:  # the trainer's output folder; nothing is kept
        arguments = TrainingArguments(output_dir=scratch, max_steps=max_steps, seed=seed, show_progress_bar=False,
                                      save_strategy="no", logging_strategy="no", report_to="none")
        trainer = Trainer(model=model, args=arguments, train_dataset=Dataset.from_dict({"text": texts, "label": labels}))
        with autocast_context(precision, device), contextlib.redirect_stdout(io.StringIO()):  # it prints its loss
            trainer.train()
    steps = trainer.st_trainer.state.global_step
    logger.info("SetFit: %d pair steps in %.1f s (%s)", steps, time.perf_counter() - start, precision)
    return SetFitRun(model, steps, time.perf_counter() - start, precision)
