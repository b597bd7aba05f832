"""Contrastive tuning of the encoder's top layers on a few labelled examples (SetFit's first phase, our way).

SetFit (Tunstall et al., 2022) tunes a Sentence Transformer so that texts of the same class sit
close together, then trains a classifier on the tuned embeddings. This module does the first
phase with sentence-transformers' own :class:`~sentence_transformers.losses.BatchAllTripletLoss`
(every anchor / same-label positive / other-label negative triplet in a batch, cosine distance),
and with the tutorial's fast path: the frozen lower layers' token vectors are cached once
(:func:`~mtt_helpers.training.cache_layers.cached_hidden_states`) and only the top ``k`` layers run at
each step, under bf16 autocast where the hardware has it. The second phase is the tutorial's MLP
head, trained with :func:`mtt_helpers.training.train` on the tuned, then frozen, encoder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
try:  # sentence-transformers >= 6 moved the losses; the old path still works there but warns
    from sentence_transformers.sentence_transformer import losses
except ImportError:  # pragma: no cover - sentence-transformers 3.x to 5.x
    from sentence_transformers import losses

from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, transformer_of
from mtt_helpers.precision import PRECISION_SETTINGS, autocast_context
from mtt_helpers.training.cache_layers import cached_hidden_states, embed_from_layer
from mtt_helpers.training.optim import linear_schedule, optimizer_step
from mtt_helpers.training.rng import torch_seeded


@dataclass
class ContrastiveConfig:
    """How to tune the encoder contrastively (phase one; the head is trained afterwards)."""

    trainable_encoder_layers: int = 2
    """How many top transformer layers learn (>= 1); the layers below stay frozen and their
    output is cached once per text."""

    steps: int = 40
    """Optimizer steps. Each step draws a class-balanced batch and uses every valid triplet in it,
    so 40 steps of 32 examples see far more same/different-label pairs than there are examples."""

    batch_size: int = 32
    """Examples per step, split evenly over the classes (a class with fewer examples than its share
    is drawn with replacement; a duplicate is a positive at distance 0 and adds nothing)."""

    encoder_lr: float = 5e-5
    """Peak AdamW learning rate of the trained layers (linear warmup, then linear decay to 0)."""

    margin: float = 0.25
    """Triplet margin on the cosine distance: a negative must be this much farther from the anchor
    than the positive. 0.25 is SetFit's default for its triplet losses."""

    warmup_ratio: float = 0.1
    """Share of ``steps`` over which the learning rate rises from 0."""

    max_grad_norm: float | None = 1.0
    """Clip the trained layers' gradient norm to this; ``None`` does not clip."""

    precision: str = "auto"
    """``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 autocast where native, see :mod:`mtt_helpers.precision`)."""

    seed: int = 0
    """Seeds the batch draws and dropout (generators of the run's own: the caller's global state is left alone)."""

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.trainable_encoder_layers, int) and not isinstance(self.trainable_encoder_layers, bool)
             and self.trainable_encoder_layers >= 1,
             f"trainable_encoder_layers must be an int >= 1, got {self.trainable_encoder_layers!r}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}"),
            (self.encoder_lr > 0, f"encoder_lr must be > 0, got {self.encoder_lr}"),
            (self.margin > 0, f"margin must be > 0, got {self.margin}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.precision in PRECISION_SETTINGS,
             f"precision must be one of {PRECISION_SETTINGS}, got {self.precision!r}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("Invalid ContrastiveConfig: " + "; ".join(problems) + ".")


@dataclass
class ContrastiveResult:
    """What a contrastive tuning run did."""

    losses: list[float] = field(default_factory=list)
    """The triplet loss of every step, in order."""

    seconds: float = 0.0
    """Wall time of the run (caching of lower layers included)."""


def contrastive_tune(model: MultiTaskSentenceTransformer, texts: list[str], labels: list,
                     config: ContrastiveConfig | None = None) -> ContrastiveResult:
    """Tunes the top layers of ``model``'s encoder in place so that same-label texts embed close together.

    Args:
        model: The model; its encoder changes in place (pass a copy to keep the original).
        texts: Labelled training texts.
        labels: One label per text (any hashable values); at least 2 classes, and at least one
            class with 2 or more texts (a triplet needs a positive).
        config: The schedule; default :class:`ContrastiveConfig`.

    Returns:
        The per-step losses and the wall time.

    Raises:
        ValueError: Lengths differ, fewer than 2 classes, no class with 2 texts, or more trainable
            layers than the encoder has.
    """
    config = config or ContrastiveConfig()
    start = time.perf_counter()
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}.")
    classes, class_ids = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(class_ids)
    if len(classes) < 2 or counts.max() < 2:
        raise ValueError(f"contrastive tuning needs >= 2 classes and a class with >= 2 texts; got counts "
                         f"{dict(zip(classes.tolist(), counts.tolist()))}.")
    blocks = transformer_of(model).encoder.layer
    if config.trainable_encoder_layers > len(blocks):
        raise ValueError(f"trainable_encoder_layers={config.trainable_encoder_layers} but the encoder has {len(blocks)} layers.")
    first_trained = len(blocks) - config.trainable_encoder_layers
    hidden = cached_hidden_states(model, texts, layer=first_trained, precision=config.precision)

    parameters = [p for block in blocks[first_trained:] for p in block.parameters()]
    # A frozen-encoder run of train() leaves requires_grad off; turn it on here, restore it after.
    previous_flags = [p.requires_grad for p in parameters]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=config.encoder_lr)
    schedule = linear_schedule(optimizer, config.warmup_ratio, config.steps)
    loss_function = losses.BatchAllTripletLoss(
        model.encoder, distance_metric=losses.BatchHardTripletLossDistanceFunction.cosine_distance, margin=config.margin)
    rng = np.random.default_rng(config.seed)
    members = [np.flatnonzero(class_ids == c) for c in range(len(classes))]
    per_class = max(2, config.batch_size // len(classes))
    result = ContrastiveResult()
    # Lower layers are cached; only the trained blocks run, with dropout.
    with torch_seeded(config.seed, model.device), eval_mode(model):
        for block in blocks[first_trained:]:
            block.train()
        for _ in range(config.steps):
            batch = np.concatenate([rng.choice(ids, per_class, replace=len(ids) < per_class) for ids in members])
            with autocast_context(config.precision, model.device):
                embeddings = embed_from_layer(model, [hidden[i] for i in batch], first_trained).float()
            loss = loss_function.compute_loss_from_embeddings(
                [embeddings], torch.as_tensor(class_ids[batch], device=embeddings.device))
            optimizer_step(loss, optimizer, schedule, parameters, config.max_grad_norm)
            result.losses.append(loss.item())
    optimizer.zero_grad(set_to_none=True)
    for parameter, flag in zip(parameters, previous_flags):
        parameter.requires_grad_(flag)
    result.seconds = time.perf_counter() - start
    return result
