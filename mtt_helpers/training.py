"""Training and evaluation of the multi-task model: one plain loop for every strategy.

Strategies, all through :func:`train`:

* **frozen encoder** (``trainable_encoder_layers=0``): embed every text once (cached in
  memory and on disk), then train only the heads on those vectors. Seconds, not minutes.
* **top-k fine-tuning** (``trainable_encoder_layers=k``): the top ``k`` transformer layers
  learn too, with their own (smaller) learning rate. The frozen lower layers' output is
  computed once per text and only the top ``k`` layers run at each step.
* **whole-encoder fine-tuning** (``trainable_encoder_layers="all"``): every encoder weight
  learns, the embedding layer included. Nothing is cached; batches of similar token length
  run through the full encoder, under bf16 autocast where the hardware has it.
* **joint training**: one loss summed over tasks. A task an example has no label for is
  ``IGNORE_INDEX`` and adds nothing, so datasets that each label one task mix freely.
  ``task_sampling`` decides how often each dataset is drawn when their sizes differ.
* **sequential training**: :func:`train_sequential` trains task A, then freezes the
  encoder and head A and trains head B.

Every step follows the same schedule (linear warmup, then linear decay to 0, gradient-norm
clipping). Every epoch is evaluated on dev; the best epoch's weights are kept (early stopping).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, recall_score
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from mtt_helpers.data import IGNORE_INDEX, encode_labels
from mtt_helpers.embedding_cache import (  # noqa: F401 (re-exported: the notebooks import them from here)
    DEFAULT_CACHE,
    EmbeddingCache,
    cached_embeddings,
    cached_hidden_states,
    clear_caches,
    embed_from_layer,
    weights_key,
    transformer_of,
)
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode
from mtt_helpers.precision import PRECISIONS, autocast_context, resolve_precision
from mtt_helpers.utils import set_seed

MAIN_METRIC = {"topic": "macro_f1", "sentiment": "macro_recall"}
"""Metric each task is selected on: macro-F1 for topic, macro recall (TweetEval's official) for sentiment."""

ALL_LAYERS = "all"
"""``trainable_encoder_layers`` value that fine-tunes the whole encoder, embedding layer included."""


# ------------------------------------------------------------------ config
@dataclass
class TrainConfig:
    """How to train a :class:`MultiTaskSentenceTransformer`.

    The schedule defaults are the recipe of issue 10's probe (whole encoder on all training
    data: encoder lr 5e-5, head lr 1e-3, batch 32, 2 epochs, linear warmup and decay,
    clipping 1.0, 128 tokens, bf16 autocast), which reached dev topic macro-F1 0.773 and
    sentiment macro-recall 0.732. :func:`recipe_config` gives that whole configuration; the
    default ``trainable_encoder_layers`` stays 0 (frozen) so that head-only uses stay cheap.
    """

    tasks: list[str] | None = None
    """Heads to train; ``None`` trains every head. Other heads stay frozen."""

    trainable_encoder_layers: int | str = 0
    """How many of the encoder's top transformer layers learn: 0 freezes it (cached embeddings);
    ``k`` trains the top ``k`` layers (the embedding layer stays frozen); ``"all"`` trains the
    whole encoder, embedding layer included (the recipe)."""

    epochs: int = 2
    """Passes over the training data (see ``steps_per_epoch``). Recipe: 2."""

    steps_per_epoch: int | None = None
    """Optimizer steps per epoch; ``None`` means one pass over all training rows."""

    batch_size: int = 32
    """Examples per optimizer step. Recipe: 32."""

    head_lr: float = 1e-3
    """Peak AdamW learning rate of the heads. Recipe: 1e-3."""

    encoder_lr: float = 5e-5
    """Peak AdamW learning rate of the trained encoder weights (small: they are pre-trained).
    Recipe: 5e-5 for the whole encoder (top-k runs in the notebooks used 1e-4)."""

    weight_decay: float = 0.01
    """AdamW weight decay for every trained parameter."""

    warmup_ratio: float = 0.1
    """Share of all planned steps (``epochs`` x steps per epoch) over which the learning rates
    rise linearly from 0; afterwards they fall linearly to 0 at the last planned step. The probe
    used warmup + linear decay; 0.1 is the usual BERT fine-tuning share (not tuned here)."""

    max_grad_norm: float | None = 1.0
    """Clip the norm of all trained parameters' gradients to this; ``None`` does not clip. Recipe: 1.0."""

    max_seq_length: int | None = 128
    """Truncate inputs to this many tokens for the run (training, caching and dev scoring); the
    encoder's own limit is restored afterwards. ``None`` keeps it (256 for MiniLM). Recipe: 128,
    which cuts under 1% of tweets and headlines and halves the cost of the longest batches."""

    precision: str = "auto"
    """``"fp32"``, ``"bf16"`` (``torch.autocast`` with bfloat16 around every forward pass:
    training steps, cache filling, dev scoring; weights stay fp32; steps that train only the
    heads on cached embeddings stay fp32, as bf16 does not pay for so small a network) or ``"auto"``: bf16 where
    the hardware runs it natively, fp32 elsewhere (see :func:`mtt_helpers.precision.resolve_precision`:
    CUDA with compute capability >= 8; a CPU whose ``/proc/cpuinfo`` flags list ``avx512_bf16``
    or ``amx_bf16``)."""

    length_grouping: bool = True
    """Put texts of similar token count in the same batch, so batches pad little: each epoch's
    shuffled rows are cut into chunks of ``length_group_batches`` batches, each chunk is sorted
    by token count and cut into batches, and the batches are shuffled. Seeded like every draw.
    With ``round_robin``/``temperature`` sampling it is done within each dataset's shuffled
    queue. Used where there are tokens to pad (fine-tuning); cached sentence vectors have none."""

    length_group_batches: int = 50
    """Batches per sorted chunk: more packs tighter, fewer keeps batches more random."""

    task_weights: dict[str, float] = field(default_factory=dict)
    """Loss weight per task; missing tasks weigh 1.0."""

    task_sampling: str = "proportional"
    """How batches are drawn when each dataset (``source``) labels one task:
    ``"proportional"``: shuffle all rows together (mixed batches, bigger datasets seen more);
    ``"round_robin"``: alternate datasets, one batch each;
    ``"temperature"``: pick a dataset with probability proportional to ``size ** (1 / T)``."""

    sampling_temperature: float = 2.0
    """``T`` for temperature sampling (> 0): 1 is proportional, large values approach uniform."""

    patience: int = 2
    """Stop after this many epochs without a better dev score."""

    seed: int = 0
    """Seeds every shuffle, task draw and dropout mask. (The heads' initial weights are drawn
    when the model is built: call ``set_seed`` before that.)"""

    track_gradient_conflict: bool = False
    """Record the cosine between the two tasks' gradients on the trainable encoder
    parameters at every step that has labels for both (costs an extra backward pass)."""

    show_progress_bar: bool = True
    """Show a tqdm bar (with an ETA) per epoch."""

    cache_dir: str | None = ".mtt_cache"
    """Folder for cached frozen embeddings; ``None`` keeps them in memory only."""

    cache_lower_layers: bool = True
    """With ``trainable_encoder_layers=k`` (0 < k < layer count), compute the frozen lower
    layers' output once per text (in memory) and run only the top ``k`` layers at each step
    and dev evaluation. The same result (frozen layers run without dropout either way) and
    several times faster; costs about 60 KB of memory per text."""

    cached_layer: int | None = None
    """Which layer's output to cache; ``None`` means just below the trainable layers. A lower
    layer lets runs with different ``k`` share one cache (the layers in between run frozen)."""

    def __post_init__(self) -> None:
        problems = []
        layers = self.trainable_encoder_layers
        if layers != ALL_LAYERS and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 0):
            problems.append(f"trainable_encoder_layers must be an int >= 0 or {ALL_LAYERS!r}, got {layers!r}")
        if self.task_sampling not in ("proportional", "round_robin", "temperature"):
            problems.append(f"Unknown task_sampling {self.task_sampling!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        checks = [
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps_per_epoch is None or self.steps_per_epoch >= 1,
             f"steps_per_epoch must be >= 1 or None, got {self.steps_per_epoch}"),
            (self.sampling_temperature > 0, f"sampling_temperature must be > 0, got {self.sampling_temperature}"),
            (self.patience >= 1, f"patience must be >= 1, got {self.patience}"),
            (self.head_lr > 0, f"head_lr must be > 0, got {self.head_lr}"),
            (self.encoder_lr > 0, f"encoder_lr must be > 0, got {self.encoder_lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.max_seq_length is None or self.max_seq_length >= 2, f"max_seq_length must be >= 2 or None, got {self.max_seq_length}"),
            (self.length_group_batches >= 1, f"length_group_batches must be >= 1, got {self.length_group_batches}"),
            (self.cached_layer is None or self.cached_layer >= 0, f"cached_layer must be >= 0 or None, got {self.cached_layer}"),
            (all(w >= 0 for w in self.task_weights.values()), f"task_weights must be >= 0, got {self.task_weights}"),
        ]
        problems += [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler, parameters: list,
                   max_grad_norm: float | None) -> None:
    """One update: clear the old gradients, backpropagate ``loss``, clip the gradient norm of
    ``parameters`` to ``max_grad_norm`` (``None``: no clipping), step, then advance the schedule."""
    optimizer.zero_grad()
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    scheduler.step()


def recipe_config(**overrides) -> TrainConfig:
    """The recommended recipe (issue 10): whole encoder, every other field at its default.

    Example:
        ``train(model, train_frame, dev_frame, recipe_config(seed=1))``
    """
    return TrainConfig(**{"trainable_encoder_layers": ALL_LAYERS, "cache_dir": None, **overrides})


@dataclass
class TrainResult:
    """What :func:`train` measured."""

    history: pd.DataFrame
    """One row per epoch: train loss per task, dev metrics per task, seconds."""

    best_epoch: int
    """The epoch whose weights were kept."""

    seconds: float
    """Wall time of the whole call, embedding cache included."""

    gradient_cosines: list[float] = field(default_factory=list)
    """Per step, cosine between the tasks' encoder gradients (``track_gradient_conflict``)."""

    precision: str = "fp32"
    """The precision the run used (``"auto"`` resolved)."""

    padded_token_ratio: float | None = None
    """Token positions run through the encoder (padding included) per real token, over all
    training steps; ``None`` when no tokens ran (frozen encoder). 1.0 means no padding."""


# -------------------------------------------------------------- freezing
def set_trainable(model: MultiTaskSentenceTransformer, encoder_layers: int | str, tasks: list[str]) -> None:
    """Freezes everything, then unfreezes the top ``encoder_layers`` layers (``"all"``: the
    whole encoder, embeddings included) and the heads of ``tasks``."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    if encoder_layers == ALL_LAYERS:
        trainable = [model.encoder]
    else:
        layers = transformer_of(model).encoder.layer
        if encoder_layers > len(layers):
            raise ValueError(f"The encoder has {len(layers)} layers; cannot unfreeze {encoder_layers}.")
        trainable = list(layers[len(layers) - encoder_layers :])
    trainable += [model.heads[task] for task in tasks]
    for module in trainable:
        for parameter in module.parameters():
            parameter.requires_grad = True


def _set_training_modes(model: MultiTaskSentenceTransformer, encoder_layers: int | str) -> None:
    """Training mode for what learns, eval mode (no dropout) for the frozen encoder parts, so a
    frozen layer gives the same output whether it runs at every step or once into a cache."""
    model.train()
    if encoder_layers == ALL_LAYERS:
        return
    bert = transformer_of(model)
    bert.embeddings.eval()
    for layer in bert.encoder.layer[: len(bert.encoder.layer) - encoder_layers]:
        layer.eval()


# ------------------------------------------------------------ evaluation
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


# --------------------------------------------------------------- batching
def length_grouped_order(
    rows: np.ndarray, token_counts: np.ndarray, batch_size: int, rng: np.random.Generator, chunk_batches: int = 50
) -> np.ndarray:
    """Reorders already shuffled ``rows`` so that each run of ``batch_size`` rows has similar
    token counts, and the runs come in random order.

    ``rows`` is cut into chunks of ``chunk_batches * batch_size``; each chunk is sorted by token
    count (stable) and cut into batches; then all batches are shuffled. Every row keeps
    exactly one place, so an epoch still sees each row once.
    """
    chunk = chunk_batches * batch_size
    batches = []
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        part = part[np.argsort(token_counts[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return np.concatenate([batches[i] for i in order]) if batches else rows


def batch_indices(
    sources: np.ndarray, config: TrainConfig, rng: np.random.Generator, token_counts: np.ndarray | None = None
) -> list[np.ndarray]:
    """Row indices of each step of one epoch, following ``config.task_sampling``.

    With ``token_counts`` and ``config.length_grouping``, rows of similar token count share a
    batch (:func:`length_grouped_order`): over the whole epoch for proportional sampling, within
    each dataset's queue for round robin and temperature sampling.
    """
    n_rows = len(sources)
    steps = config.steps_per_epoch or math.ceil(n_rows / config.batch_size)
    size = config.batch_size

    def grouped(rows: np.ndarray) -> np.ndarray:
        if token_counts is None or not config.length_grouping:
            return rows
        return length_grouped_order(rows, token_counts, size, rng, config.length_group_batches)

    if config.task_sampling == "proportional":
        order = np.concatenate([rng.permutation(n_rows) for _ in range(math.ceil(steps * size / n_rows))])
        order = grouped(order[: steps * size])
        return [order[i * size : (i + 1) * size] for i in range(steps)]
    names, counts = np.unique(sources, return_counts=True)
    pools = {name: np.flatnonzero(sources == name) for name in names}
    queues = {name: grouped(rng.permutation(pools[name])) for name in names}
    if config.task_sampling == "round_robin":
        picks = [names[i % len(names)] for i in range(steps)]
    else:
        weights = counts ** (1.0 / config.sampling_temperature)
        picks = rng.choice(names, size=steps, p=weights / weights.sum())
    batches = []
    for name in picks:
        if len(queues[name]) < size:  # refill with a fresh shuffle (the leftover rows join it)
            queues[name] = grouped(np.concatenate([queues[name], rng.permutation(pools[name])]))
        batches.append(queues[name][:size])
        queues[name] = queues[name][size:]
    return batches


def padding_counts(batches: list[np.ndarray], token_counts: np.ndarray) -> tuple[int, int]:
    """Token positions a padded run of ``batches`` computes, and how many of them are real tokens."""
    padded = sum(len(b) * int(token_counts[b].max()) for b in batches if len(b))
    return padded, sum(int(token_counts[b].sum()) for b in batches)


def padded_token_ratio(batches: list[np.ndarray], token_counts: np.ndarray) -> float:
    """Token positions a padded run of ``batches`` computes, per real token (1.0: no padding)."""
    padded, real = padding_counts(batches, token_counts)
    return padded / real


def token_counts(model: MultiTaskSentenceTransformer, texts: list[str], chunk: int = 1024) -> np.ndarray:
    """Tokens per text (special tokens included, after truncation to the encoder's max length),
    counted with the model's own tokenizer."""
    counts = [model.tokenize(texts[i : i + chunk])["attention_mask"].sum(dim=1).cpu() for i in range(0, len(texts), chunk)]
    return torch.cat(counts).numpy()


# ----------------------------------------------------------------- losses
def task_losses(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task over the rows labelled for it (``IGNORE_INDEX`` rows add nothing:
    the mean runs over labelled rows only). A task with no labelled row in the batch is left out."""
    return {
        task: F.cross_entropy(logits[task].float(), target.to(logits[task].device), ignore_index=IGNORE_INDEX)
        for task, target in targets.items()
        if (target != IGNORE_INDEX).any()
    }


def _gradient_cosine(losses: dict[str, torch.Tensor], parameters: list[torch.nn.Parameter]) -> float:
    """Cosine between the two tasks' gradients on ``parameters``."""
    flat = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)]))
    return F.cosine_similarity(flat[0], flat[1], dim=0).item()


# ------------------------------------------------------- batch embedding
@dataclass
class BatchEmbedder:
    """The one place where frozen, cached-lower-layer and full-encoder training differ."""

    mode: str
    """``"frozen"``, ``"cached_layers"`` or ``"full"``."""

    embed: Callable[[np.ndarray], torch.Tensor]
    """Training-row indices -> sentence embeddings, with gradients where the encoder learns."""

    dev_embeddings: Callable[[], torch.Tensor | None]
    """Embeddings of the dev texts for scoring, or ``None``: score with the full model."""

    token_counts: np.ndarray | None
    """Tokens per training row, for length grouping; ``None`` when no tokens run (frozen)."""


def make_batch_embedder(
    model: MultiTaskSentenceTransformer, texts: list[str], dev_texts: list[str], config: TrainConfig,
    precision: str, cache: EmbeddingCache,
) -> BatchEmbedder:
    """Chooses and prepares how training rows become embeddings (call after :func:`set_trainable`)."""
    k = config.trainable_encoder_layers
    n_layers = len(transformer_of(model).encoder.layer)
    if k == 0:  # every epoch sees the same vectors: compute them once
        train_vectors = cached_embeddings(model, texts, config.cache_dir, precision=precision, cache=cache)
        dev_vectors = cached_embeddings(model, dev_texts, config.cache_dir, precision=precision, cache=cache) if dev_texts else None
        return BatchEmbedder("frozen", lambda index: train_vectors[index].to(model.device), lambda: dev_vectors, None)

    if k != ALL_LAYERS and k < n_layers and config.cache_lower_layers:
        start_layer = n_layers - k
        if config.cached_layer is not None:
            if config.cached_layer > start_layer:
                raise ValueError(f"cached_layer must be between 0 and {start_layer} (below the trainable layers).")
            start_layer = config.cached_layer
        hidden = cached_hidden_states(model, texts, start_layer, precision=precision, cache=cache)
        dev_hidden = cached_hidden_states(model, dev_texts, start_layer, precision=precision, cache=cache) if dev_texts else []

        def dev_embeddings() -> torch.Tensor:
            with torch.no_grad():
                return torch.cat([embed_from_layer(model, dev_hidden[i : i + 128], start_layer).float().cpu()
                                  for i in range(0, len(dev_hidden), 128)])

        return BatchEmbedder(
            "cached_layers", lambda index: embed_from_layer(model, [hidden[i] for i in index], start_layer),
            dev_embeddings, np.array([h.shape[0] for h in hidden]),
        )

    # Whole encoder (or top-k without the cache): tokens run through every layer at each step.
    # Batches are tokenized by the model's own tokenize (a few ms, under 1% of a step).
    return BatchEmbedder(
        "full", lambda index: model.encode_features(model.tokenize([texts[i] for i in index])),
        lambda: None, token_counts(model, texts),
    )


# ------------------------------------------------------------------ train
@contextlib.contextmanager
def truncated_to(model: MultiTaskSentenceTransformer, max_seq_length: int | None):
    """Sets the encoder's ``max_seq_length`` for the ``with`` block (``None``: leaves it) and
    restores the encoder's own value afterwards, also after an error."""
    own = model.encoder.max_seq_length
    if max_seq_length is not None:
        model.encoder.max_seq_length = max_seq_length
    try:
        yield model
    finally:
        model.encoder.max_seq_length = own


@contextlib.contextmanager
def _frozen_and_eval_afterwards(model: MultiTaskSentenceTransformer):
    """Whatever happens in the block, the model ends frozen and in eval mode (as :func:`train` documents)."""
    try:
        yield model
    finally:
        set_trainable(model, 0, [])
        model.eval()


def _check_inputs(model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, dev_frame: pd.DataFrame | None,
                  tasks: list[str]) -> None:
    """Raises ``ValueError`` before any work when the tasks, training rows or dev set cannot be used."""
    unknown = [task for task in tasks if task not in model.config.tasks or task not in train_frame.columns]
    if unknown:
        raise ValueError(f"Task(s) {unknown} are not both a model head and a column of train_frame.")
    if train_frame.empty:
        raise ValueError("train_frame has no rows.")
    if dev_frame is None:
        return
    if "text" not in dev_frame.columns or dev_frame.empty:
        raise ValueError("dev_frame has no rows (or no 'text' column); pass dev_frame=None to train without a dev set.")
    blank = np.flatnonzero(~dev_frame["text"].map(lambda t: isinstance(t, str) and bool(t.strip())).to_numpy())
    if len(blank):
        raise ValueError(f"dev_frame has {len(blank)} empty or non-text text(s), at row position(s) "
                         f"{blank[:5].tolist()}{' ...' if len(blank) > 5 else ''}; drop them first.")
    unscored = [task for task in tasks if task not in dev_frame.columns or not dev_frame[task].notna().any()]
    if unscored:
        raise ValueError(f"dev_frame has no labels for trained task(s) {unscored}: their dev score would be "
                         "undefined. Add labelled dev rows, train fewer tasks, or pass dev_frame=None.")


def train(
    model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, dev_frame: pd.DataFrame | None, config: TrainConfig,
    cache: EmbeddingCache | None = None,
) -> TrainResult:
    """Trains the model in place and keeps the weights of the best dev epoch.

    Args:
        model: The model; its heads are trained from their current weights.
        train_frame: ``text``, optional ``source``, and one column per task (``None``/``NaN``
            where an example has no label for that task), e.g. from ``multitask_frame``.
            Labels are encoded in the order of ``model.config.tasks``, the order predictions
            are decoded with.
        dev_frame: Same columns; scored every epoch, with labels for every trained task.
            ``None``: no dev set, so every epoch runs and the last one's weights are kept
            (a fixed schedule: use it when the only labelled held-out data is the set you
            report on).
        config: Strategy and hyper-parameters.
        cache: In-memory embedding cache; default the module's shared one.

    Returns:
        Per-epoch history, best epoch, wall time, gradient cosines, precision, padding.
        Afterwards, also after an error, the model is in eval mode with every parameter
        frozen and the encoder's own ``max_seq_length``.
    """
    start = time.perf_counter()
    tasks = config.tasks or model.task_names
    _check_inputs(model, train_frame, dev_frame, tasks)
    labels = {task: encode_labels(train_frame, task, model.config.tasks[task]) for task in tasks}
    sources = train_frame["source"].to_numpy() if "source" in train_frame else np.zeros(len(train_frame))
    texts = train_frame["text"].tolist()
    dev_texts = dev_frame["text"].tolist() if dev_frame is not None else []
    precision = resolve_precision(config.precision, model.device)
    set_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    with truncated_to(model, config.max_seq_length), _frozen_and_eval_afterwards(model):
        set_trainable(model, config.trainable_encoder_layers, tasks)  # also checks k against the layer count
        embedder = make_batch_embedder(model, texts, dev_texts, config, precision, cache or DEFAULT_CACHE)
        encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
        trained_params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": [p for task in tasks for p in model.heads[task].parameters()], "lr": config.head_lr}]
        if encoder_params:
            groups.append({"params": encoder_params, "lr": config.encoder_lr})
        optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
        steps_per_epoch = config.steps_per_epoch or math.ceil(len(train_frame) / config.batch_size)
        total_steps = config.epochs * steps_per_epoch
        scheduler = get_linear_schedule_with_warmup(optimizer, math.floor(config.warmup_ratio * total_steps), total_steps)

        # Heads alone are too small for bf16 to pay: autocast's casts cost more than they save.
        step_precision = "fp32" if embedder.mode == "frozen" else precision
        trained_names = {name for name, p in model.named_parameters() if p.requires_grad}
        best_score, best_epoch, best_state, stale = -math.inf, 0, None, 0
        rows, cosines, padded, real = [], [], 0, 0
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            _set_training_modes(model, config.trainable_encoder_layers)
            totals = {task: [0.0, 0] for task in tasks}
            batches = batch_indices(sources, config, rng, embedder.token_counts)
            if embedder.token_counts is not None:
                epoch_padded, epoch_real = padding_counts(batches, embedder.token_counts)
                padded, real = padded + epoch_padded, real + epoch_real
            for index in tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", disable=not config.show_progress_bar,
                              leave=False):
                with autocast_context(step_precision, model.device):
                    logits = model.classify(embedder.embed(index))
                losses = task_losses(logits, {task: labels[task][index] for task in tasks})
                if not losses:
                    continue  # no row of this batch is labelled for a trained task
                for task, value in losses.items():
                    totals[task][0] += value.item()
                    totals[task][1] += 1
                if config.track_gradient_conflict and len(losses) == 2 and encoder_params:
                    cosines.append(_gradient_cosine(losses, encoder_params))
                loss = sum(config.task_weights.get(task, 1.0) * value for task, value in losses.items())
                optimizer_step(loss, optimizer, scheduler, trained_params, config.max_grad_norm)

            model.eval()
            row = {"epoch": epoch}
            row.update({f"train_loss_{t}": s / n if n else float("nan") for t, (s, n) in totals.items()})
            if dev_frame is None:
                row["seconds"] = time.perf_counter() - epoch_start
                rows.append(row)
                best_epoch, best_state = epoch, None  # keep the weights as they are: the last epoch's
                continue
            with autocast_context(precision, model.device):
                metrics = evaluate(model, dev_frame, tasks, embedder.dev_embeddings())
            score = dev_score(metrics)
            row.update({f"dev_{t}_{m}": v for t, values in metrics.items() for m, v in values.items()})
            row.update({"dev_score": score, "seconds": time.perf_counter() - epoch_start})
            rows.append(row)
            if score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = copy.deepcopy({k: v for k, v in model.state_dict().items() if k in trained_names})
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
    return TrainResult(pd.DataFrame(rows), best_epoch, time.perf_counter() - start, cosines, precision,
                       float(padded / real) if real else None)


def train_sequential(
    model: MultiTaskSentenceTransformer,
    train_frame: pd.DataFrame,
    dev_frame: pd.DataFrame,
    first: TrainConfig,
    second: TrainConfig,
) -> tuple[TrainResult, TrainResult]:
    """Trains ``first.tasks`` (encoder layers included), then freezes the encoder and
    those heads and trains ``second.tasks`` on top (``second`` must keep the encoder frozen).
    """
    if not first.tasks or not second.tasks:
        raise ValueError("Sequential training needs explicit tasks in both configs.")
    if second.trainable_encoder_layers != 0:
        raise ValueError("The second stage trains heads only: set trainable_encoder_layers=0.")
    stage_one = train(model, train_frame.loc[train_frame[first.tasks].notna().all(axis=1)], dev_frame, first)
    stage_two = train(model, train_frame.loc[train_frame[second.tasks].notna().all(axis=1)], dev_frame, second)
    return stage_one, stage_two
