"""Chapter 03: training the multi-task model. The chapter's code, collected: one loop for every strategy.

:func:`train` is written out in one function: each step moves its batch to the model's device,
runs the forward pass under autocast, computes the masked multi-task loss (:func:`masked_loss`),
calls ``backward``, clips the gradient norm, steps AdamW and the learning-rate schedule. After every
epoch it scores a held-out frame and keeps the best epoch's weights. :class:`TrainConfig` picks the
strategy:

* **frozen encoder** (``trainable_encoder_layers=0``): every text is embedded once
  (:class:`~mtt_helpers.embedding_cache.EmbeddingCache`) and only the heads train on those vectors;
* **top-k** (``trainable_encoder_layers=k``): the top ``k`` layers learn too; the frozen layers below
  run once per text and only the top ``k`` run at each step;
* **whole encoder** (``"all"``, the recipe): every encoder weight learns;
* **joint training** of tasks whose datasets each label one task: rows carry ``None`` for the task they
  are not labelled for, and the masked loss leaves them out; ``task_sampling`` decides how often each
  dataset is drawn (:func:`batch_indices`), ``loss_weighting`` how the tasks' losses add up;
* **sequential training** (:func:`train_sequential`): task A with the encoder, then head B on top of
  the frozen result.

Precision and processes are PyTorch's own machinery: ``torch.autocast`` (bf16 where native, fp16 with
``torch.amp.GradScaler`` on GPUs without bf16; :mod:`~mtt_helpers.precision`) and
``DistributedDataParallel`` when the program runs under ``torchrun`` (each process takes its share
of every batch, and the gradients are averaged across processes before each step). ``train`` hands
the model back as it found it: the same train/eval modes and ``requires_grad`` flags, only the trained
weights changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score, recall_score
from torch import nn
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from mtt_core.model_files import TRAINING_ARGS_FILE
from mtt_core.predictions import is_text, token_counts
from mtt_helpers.data import IGNORE_INDEX, encode_labels
from mtt_helpers.embedding_cache import EmbeddingCache
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, pad_token_vectors
from mtt_helpers.precision import PRECISION_SETTINGS, autocast_context, resolve_precision

ALL_LAYERS = "all"
"""``trainable_encoder_layers`` value that fine-tunes the whole encoder, embedding layer included."""

SAMPLING_RULES = ("proportional", "temperature", "round_robin")
"""How batches are drawn from datasets that each label one task (:func:`batch_indices`)."""

LOSS_WEIGHTINGS = ("task_mean", "example_mean")
"""How the tasks' losses in one batch add up (:func:`masked_loss`)."""

MAIN_METRIC = {"topic": "macro_f1", "sentiment": "macro_recall"}
"""The metric each task is selected and reported on: macro-F1 for topic, macro-recall (TweetEval's official) for sentiment."""


@dataclass
class TrainConfig:
    """How :func:`train` trains; saved with a model as ``training_args.json`` and read back by :func:`read_training_args`."""

    tasks: list[str] | None = None
    """Heads to train; ``None`` trains every head with a column in the training frame. Other heads stay as they are."""

    trainable_encoder_layers: int | str = 0
    """How many of the encoder's top transformer layers learn: 0 freezes it (cached embeddings);
    ``k`` trains the top ``k`` (the embedding layer stays frozen); ``"all"`` trains the whole encoder."""

    epochs: int = 2
    """Passes over the training data (see ``steps_per_epoch``)."""

    steps_per_epoch: int | None = None
    """Optimizer steps per epoch; ``None``: one pass over every training row."""

    batch_size: int = 32
    """Examples per optimizer step, over all processes together (each takes its share)."""

    head_lr: float = 1e-3
    """Peak AdamW learning rate of the heads: fresh weights, so a large one."""

    encoder_lr: float = 5e-5
    """Peak AdamW learning rate of the trained encoder weights: pre-trained, so a small one."""

    weight_decay: float = 0.01
    """AdamW weight decay of the weight matrices; biases and LayerNorm parameters get none (as in BERT and nanoGPT)."""

    warmup_ratio: float = 0.1
    """Share of all planned steps over which the learning rates rise linearly from 0; they then fall
    linearly to 0 at the last planned step."""

    max_grad_norm: float | None = 1.0
    """Clip the norm of all trained parameters' gradients to this; ``None``: no clipping."""

    precision: str = "auto"
    """``"fp32"``, ``"bf16"``, ``"fp16"`` (with loss scaling) or ``"auto"`` (:func:`~mtt_helpers.precision.resolve_precision`).
    Runs that train only heads on cached embeddings stay fp32: so small a network gains nothing."""

    length_grouping: bool = True
    """Put texts of similar token count in the same batch, so batches pad little (:func:`length_grouped_order`).
    Used where tokens run through the encoder; cached sentence vectors have none to pad."""

    length_group_batches: int = 50
    """Batches per sorted chunk: more packs tighter, fewer keeps batches more random."""

    task_sampling: str = "proportional"
    """How batches are drawn when each dataset (the frame's ``source``) labels one task:
    ``"proportional"`` shuffles all rows together; ``"round_robin"`` alternates datasets, one batch each;
    ``"temperature"`` draws each batch's dataset with probability proportional to ``size ** (1 / T)``."""

    sampling_temperature: float = 2.0
    """``T`` of temperature sampling (> 0): 1 is proportional, large values approach equal turns."""

    loss_weighting: str = "task_mean"
    """``"task_mean"``: each task's loss is the mean over its labelled rows, and the tasks are summed;
    ``"example_mean"``: every labelled row weighs the same (:func:`masked_loss`)."""

    task_weights: dict[str, float] = field(default_factory=dict)
    """Loss weight per task; missing tasks weigh 1.0."""

    patience: int = 2
    """Stop after this many epochs without a better held-out score."""

    seed: int = 0
    """Seeds every shuffle, task draw and dropout mask, with generators of the run's own: the caller's
    global random state is left as it was (the heads' first weights are drawn when the model is built)."""

    track_gradient_conflict: bool = False
    """Record the cosine between the two tasks' gradients on the trainable encoder weights at every step
    that has labels for both (costs an extra backward pass; one process only)."""

    show_progress_bar: bool = True
    """Show a progress bar with an ETA per epoch."""

    cache_lower_layers: bool = True
    """With ``0 < k < layers``, compute the frozen lower layers' output once per text and run only the
    top ``k`` layers at each step: the same result, several times faster, about 60 KB of memory per text."""

    def __post_init__(self) -> None:
        layers = self.trainable_encoder_layers
        problems = []
        if layers != ALL_LAYERS and (isinstance(layers, bool) or not isinstance(layers, int) or layers < 0):
            problems.append(f"trainable_encoder_layers must be an int >= 0 or {ALL_LAYERS!r}, got {layers!r}")
        for name, value, allowed in (("task_sampling", self.task_sampling, SAMPLING_RULES),
                                     ("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS),
                                     ("precision", self.precision, PRECISION_SETTINGS)):
            if value not in allowed:
                problems.append(f"{name} must be one of {allowed}, got {value!r}")
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
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.length_group_batches >= 1, f"length_group_batches must be >= 1, got {self.length_group_batches}"),
            (all(w >= 0 for w in self.task_weights.values()), f"task_weights must be >= 0, got {self.task_weights}"),
        ]
        problems += [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems) + ".")

    def epoch_steps(self, n_rows: int) -> int:
        """Optimizer steps per epoch over ``n_rows`` training rows."""
        return self.steps_per_epoch or math.ceil(n_rows / self.batch_size)


def recipe_config(**overrides: Any) -> TrainConfig:
    """The recommended recipe: the whole encoder, both heads, 2 epochs, every other setting at its
    default (AdamW at 5e-5 / 1e-3, warmup then linear decay, clipping at 1.0, length-grouped batches
    of 32, bf16 where native). The model's own token limit (128 by default) applies."""
    return TrainConfig(**{"trainable_encoder_layers": ALL_LAYERS, **overrides})


def read_training_args(directory: str | os.PathLike) -> tuple[TrainConfig | None, dict[str, Any]]:
    """The ``TrainConfig`` and the data record a model was saved with (``save(..., training_args=...)``).

    Raises:
        FileNotFoundError: the model was saved without them.
        ValueError: the file is unreadable or holds an invalid setting (the message names the file).
    """
    path = Path(directory).expanduser() / TRAINING_ARGS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {TRAINING_ARGS_FILE} in {str(path.parent)!r}: it was saved without training_args.")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or set(raw) != {"train_config", "data"}:
            raise ValueError("expected an object with the keys 'train_config' and 'data'")
        settings, data = raw["train_config"], raw["data"]
        if not isinstance(data, dict) or not (settings is None or isinstance(settings, dict)):
            raise ValueError("'train_config' must be an object or null, and 'data' an object")
        unknown = sorted(set(settings or {}) - {item.name for item in dataclasses.fields(TrainConfig)})
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}")
        return (None if settings is None else TrainConfig(**settings)), data
    except (ValueError, TypeError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"Unreadable training arguments {str(path)!r}: {error}") from error


# ----------------------------------------------------------------------------- the loss
def masked_loss(logits: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor],
                weighting: str = "task_mean", task_weights: Mapping[str, float] | None = None,
                ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """The multi-task loss of one batch, and each task's mean cross-entropy (for the log).

    Every head scores every row, but a row is labelled only for some tasks; the others carry
    :data:`~mtt_helpers.data.IGNORE_INDEX` and add nothing.

    * ``"task_mean"``: each task's cross-entropy is averaged over the rows labelled for it, and the
      tasks are summed: every task weighs the same in every batch, however few of its rows the batch holds.
    * ``"example_mean"``: every labelled (row, task) weighs the same: all their cross-entropies summed,
      over their count, so a task weighs by its share of the batch.

    Returns:
        ``(loss, per_task)``; ``loss`` is ``None`` when no row of the batch is labelled for any task.
    """
    weights = task_weights or {}
    sums, counts = {}, {}
    for task, target in targets.items():
        labelled = target != IGNORE_INDEX
        if labelled.any():
            sums[task] = F.cross_entropy(logits[task].float(), target, ignore_index=IGNORE_INDEX, reduction="sum")
            counts[task] = labelled.sum()
    per_task = {task: sums[task] / counts[task] for task in sums}
    if not sums:
        return None, per_task
    if weighting == "task_mean":
        return sum(weights.get(task, 1.0) * per_task[task] for task in per_task), per_task
    if weighting == "example_mean":
        return sum(weights.get(task, 1.0) * sums[task] for task in sums) / sum(counts.values()), per_task
    raise ValueError(f"weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}.")


def gradient_cosine(losses: Mapping[str, torch.Tensor], parameters: list[nn.Parameter]) -> float:
    """Cosine between two tasks' gradients on ``parameters``: above 0 they push the same way, below 0 against each other."""
    flat = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)]))
    return F.cosine_similarity(flat[0], flat[1], dim=0).item()


# ----------------------------------------------------------------------------- task sampling
def sampling_shares(sizes: Mapping[str, int], rule: str, temperature: float = 2.0) -> dict[str, float]:
    """Each dataset's expected share of the batches: ``size ** (1 / T)``, normalised. Proportional is
    ``T = 1``; round robin gives every dataset the same share (the limit of large ``T``)."""
    if rule not in SAMPLING_RULES:
        raise ValueError(f"rule must be one of {SAMPLING_RULES}, got {rule!r}.")
    power = {"proportional": 1.0, "temperature": 1.0 / temperature, "round_robin": 0.0}[rule]
    weights = {name: float(size) ** power for name, size in sizes.items()}
    return {name: weight / sum(weights.values()) for name, weight in weights.items()}


def length_grouped_order(rows: np.ndarray, counts: np.ndarray, batch_size: int, rng: np.random.Generator,
                         chunk_batches: int = 50) -> np.ndarray:
    """Reorders shuffled ``rows`` so that each run of ``batch_size`` rows has similar token counts and the
    runs come in random order: chunks of ``chunk_batches`` batches are sorted by count and cut into
    batches, then the batches are shuffled. Every row keeps exactly one place."""
    chunk = chunk_batches * batch_size
    batches = []
    for start in range(0, len(rows), chunk):
        part = rows[start: start + chunk]
        part = part[np.argsort(counts[part], kind="stable")]
        batches += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
    order = rng.permutation(len(batches))
    return np.concatenate([batches[i] for i in order]) if batches else rows


def batch_indices(sources: np.ndarray, config: TrainConfig, rng: np.random.Generator,
                  counts: np.ndarray | None = None) -> list[np.ndarray]:
    """The row indices of each step of one epoch, following ``config.task_sampling``.

    With token ``counts`` and ``config.length_grouping``, rows of similar length share a batch: over
    the whole epoch for proportional sampling, within each dataset's queue for the other rules.
    """
    steps, size = config.epoch_steps(len(sources)), config.batch_size

    def grouped(rows: np.ndarray) -> np.ndarray:
        if counts is None or not config.length_grouping:
            return rows
        return length_grouped_order(rows, counts, size, rng, config.length_group_batches)

    if config.task_sampling == "proportional":
        order = np.concatenate([rng.permutation(len(sources)) for _ in range(math.ceil(steps * size / len(sources)))])
        order = grouped(order[: steps * size])
        return [order[i * size: (i + 1) * size] for i in range(steps)]
    names, sizes = np.unique(sources, return_counts=True)
    pools = {name: np.flatnonzero(sources == name) for name in names}
    queues = {name: grouped(rng.permutation(pools[name])) for name in names}
    if config.task_sampling == "round_robin":
        picks = [names[i % len(names)] for i in range(steps)]
    else:
        shares = sampling_shares(dict(zip(names, sizes)), "temperature", config.sampling_temperature)
        picks = rng.choice(names, size=steps, p=[shares[name] for name in names])
    batches = []
    for name in picks:
        if len(queues[name]) < size:  # refill with a fresh shuffle (the leftover rows join it)
            queues[name] = grouped(np.concatenate([queues[name], rng.permutation(pools[name])]))
        batches.append(queues[name][:size])
        queues[name] = queues[name][size:]
    return batches


def padding_counts(batches: list[np.ndarray], counts: np.ndarray) -> tuple[int, int]:
    """Token positions a padded run of ``batches`` computes, and how many of them are real tokens."""
    padded = sum(len(b) * int(counts[b].max()) for b in batches if len(b))
    return padded, sum(int(counts[b].sum()) for b in batches)


# ----------------------------------------------------------------------------- scoring
def task_metrics(y_true, y_pred, labels: list[str] | None = None) -> dict[str, float]:
    """Accuracy, macro-F1 and macro-recall (scikit-learn), macro-averaged over ``labels``."""
    return {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "macro_recall": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }


def task_logits(model: MultiTaskSentenceTransformer, texts: list[str] | None, task: str,
                embeddings: torch.Tensor | None = None) -> torch.Tensor:
    """One task's logits (float32, CPU), from texts or from precomputed embeddings, in eval mode."""
    with eval_mode(model), torch.no_grad():
        if embeddings is not None:
            return model.heads[task](embeddings.to(model.device)).float().cpu()
        return model.predict_logits(texts)[task].float().cpu()


def predict_labels(model: MultiTaskSentenceTransformer, texts: list[str] | None, task: str,
                   embeddings: torch.Tensor | None = None) -> list[str]:
    """Predicted label names for one task, from texts or from precomputed embeddings."""
    labels = model.config.tasks[task]
    return [labels[i] for i in task_logits(model, texts, task, embeddings).argmax(dim=1).tolist()]


def evaluate(model: MultiTaskSentenceTransformer, frame: pd.DataFrame, tasks: list[str] | None = None,
             embeddings: torch.Tensor | None = None) -> dict[str, dict[str, float]]:
    """Metrics per task on the rows of ``frame`` labelled for it: accuracy, macro-F1, macro-recall and
    ``loss`` (the mean cross-entropy, the quantity training minimises).

    Args:
        tasks: Default: every model task with a column in ``frame``.
        embeddings: Precomputed embeddings of ``frame.text`` (a frozen encoder), optional.
    """
    tasks = tasks or [t for t in model.task_names if t in frame.columns]
    results = {}
    for task in tasks:
        mask = frame[task].notna().to_numpy()
        if not mask.any():
            continue
        logits = task_logits(model, frame["text"][mask].tolist(), task,
                             embeddings[torch.tensor(mask)] if embeddings is not None else None)
        labels = model.config.tasks[task]
        results[task] = task_metrics(frame[task][mask].tolist(), [labels[i] for i in logits.argmax(dim=1).tolist()], labels)
        results[task]["loss"] = F.cross_entropy(logits, encode_labels(frame.loc[mask], task, labels)).item()
    return results


def selection_score(metrics: Mapping[str, Mapping[str, float]]) -> float:
    """The mean over tasks of each task's :data:`MAIN_METRIC`: what early stopping maximises."""
    return float(np.mean([metrics[task][MAIN_METRIC.get(task, "macro_f1")] for task in metrics]))


# ----------------------------------------------------------------------------- what learns
def set_trainable(model: MultiTaskSentenceTransformer, encoder_layers: int | str, tasks: list[str]) -> None:
    """Freezes everything, then unfreezes the top ``encoder_layers`` layers (``"all"``: the whole
    encoder, embeddings included) and the heads of ``tasks``."""
    model.requires_grad_(False)
    if encoder_layers == ALL_LAYERS:
        model.encoder.requires_grad_(True)
    elif encoder_layers:
        layers = model.transformer.encoder.layer
        if encoder_layers > len(layers):
            raise ValueError(f"The encoder has {len(layers)} layers; cannot unfreeze {encoder_layers}.")
        for layer in layers[len(layers) - encoder_layers:]:
            layer.requires_grad_(True)
    for task in tasks:
        model.heads[task].requires_grad_(True)


def set_training_modes(model: MultiTaskSentenceTransformer, encoder_layers: int | str) -> None:
    """Training mode (dropout on) for what learns, eval mode for the frozen encoder parts, so a frozen
    layer gives the same output whether it runs at every step or once into a cache."""
    model.train()
    if encoder_layers == ALL_LAYERS:
        return
    model.transformer.embeddings.eval()
    for layer in model.transformer.encoder.layer[: len(model.transformer.encoder.layer) - encoder_layers]:
        layer.eval()


@contextlib.contextmanager
def as_found(model: nn.Module) -> Iterator[None]:
    """Whatever happens in the block, every submodule's train/eval mode and every parameter's
    ``requires_grad`` are given back afterwards (weights that changed stay changed)."""
    modes = [(module, module.training) for module in model.modules()]
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def parameter_groups(model: MultiTaskSentenceTransformer, tasks: list[str], config: TrainConfig) -> list[dict]:
    """AdamW's parameter groups: the heads of ``tasks`` at ``head_lr`` and the trainable encoder weights at
    ``encoder_lr``, each split in two: weight matrices (decayed by ``weight_decay``) and biases and
    LayerNorm parameters (not decayed; decay would pull them towards 0, which means nothing for them)."""
    parts = {"heads": ([p for task in tasks for p in model.heads[task].parameters() if p.requires_grad], config.head_lr),
             "encoder": ([p for p in model.encoder.parameters() if p.requires_grad], config.encoder_lr)}
    groups = []
    for name, (parameters, lr) in parts.items():
        groups.append({"name": f"{name}: weight matrices", "params": [p for p in parameters if p.dim() >= 2],
                       "lr": lr, "weight_decay": config.weight_decay})
        groups.append({"name": f"{name}: biases and LayerNorm", "params": [p for p in parameters if p.dim() < 2],
                       "lr": lr, "weight_decay": 0.0})
    return [group for group in groups if group["params"]]


# ----------------------------------------------------------------------------- inputs of a step
class _StepForward(nn.Module):
    """One step's forward pass, ``inputs -> {task: logits}``, as a module, so that
    ``DistributedDataParallel`` can wrap it. What the inputs are depends on what is frozen:

    * ``"frozen"``: ``{"embeddings"}``, the cached sentence vectors; only the heads run;
    * ``"cached_layers"``: ``{"states", "mask"}``, the cached token vectors below ``layer``; the top layers and heads run;
    * ``"full"``: the token ids; the whole encoder and heads run.
    """

    def __init__(self, model: MultiTaskSentenceTransformer, mode: str, layer: int = 0) -> None:
        super().__init__()
        self.model, self.mode, self.layer = model, mode, layer

    def forward(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.mode == "frozen":
            return self.model.classify(inputs["embeddings"])
        if self.mode == "cached_layers":
            return self.model.classify(self.model.encode_from_layer(inputs["states"], inputs["mask"], self.layer))
        return self.model.classify(self.model.encode_features(inputs))


@dataclass
class _Inputs:
    """Where each training row's inputs come from, chosen once per run by :func:`_prepare_inputs`."""

    mode: str
    layer: int
    rows: Any
    """Callable: row indices -> that batch's inputs, on the CPU."""
    held_out_embeddings: Any
    """Callable: -> sentence embeddings of the held-out texts, or ``None`` (score with the full model)."""
    counts: np.ndarray | None
    """Tokens per training row, for length grouping; ``None`` when no tokens run (frozen)."""


def _prepare_inputs(model: MultiTaskSentenceTransformer, texts: list[str], held_out_texts: list[str],
                    config: TrainConfig, precision: str, cache: EmbeddingCache) -> _Inputs:
    k, n_layers = config.trainable_encoder_layers, len(model.transformer.encoder.layer)
    if k == 0:  # every epoch sees the same vectors: compute them once
        vectors = cache.embeddings(model, texts, precision)
        held_out = cache.embeddings(model, held_out_texts, precision) if held_out_texts else None
        return _Inputs("frozen", 0, lambda index: {"embeddings": vectors[index]}, lambda: held_out, None)
    if k != ALL_LAYERS and k < n_layers and config.cache_lower_layers:
        layer = n_layers - k
        hidden = cache.hidden_states(model, texts, layer, precision)
        held_out_hidden = cache.hidden_states(model, held_out_texts, layer, precision) if held_out_texts else []

        def rows(index: np.ndarray) -> dict[str, torch.Tensor]:
            states, mask = pad_token_vectors([hidden[i] for i in index])
            return {"states": states, "mask": mask}

        def held_out_embeddings() -> torch.Tensor:
            chunks = []
            with torch.no_grad(), autocast_context(precision, model.device):
                for start in range(0, len(held_out_hidden), 128):
                    states, mask = pad_token_vectors(held_out_hidden[start: start + 128])
                    chunks.append(model.encode_from_layer(states.to(model.device), mask.to(model.device), layer)
                                  .float().cpu())
            return torch.cat(chunks)

        return _Inputs("cached_layers", layer, rows, held_out_embeddings, np.array([h.shape[0] for h in hidden]))
    counts = np.asarray(token_counts(model.encoder.tokenizer, texts, model.max_seq_length)[0])
    return _Inputs("full", 0, lambda index: model.tokenize([texts[i] for i in index]), lambda: None, counts)


# ----------------------------------------------------------------------------- checks before any work
def _check_texts_column(frame: pd.DataFrame, name: str) -> None:
    if "text" not in frame.columns:
        raise ValueError(f"{name} has no 'text' column; its columns are {list(frame.columns)}.")
    bad = [(position, label, text) for position, (label, text) in enumerate(frame["text"].items()) if not is_text(text)]
    if bad:
        shown = ", ".join(f"row {position} (index {label!r}): {text!r}" for position, label, text in bad[:5])
        raise ValueError(f"{name} has {len(bad)} empty or non-string text(s): {shown}{' ...' if len(bad) > 5 else ''}; "
                         "drop or fix them first.")


def _check_inputs(model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, held_out: pd.DataFrame | None,
                  tasks: list[str], config: TrainConfig, processes: int) -> None:
    """Raises ``ValueError`` before any work, naming what to fix."""
    unknown = [task for task in tasks if task not in model.config.tasks or task not in train_frame.columns]
    if unknown:
        raise ValueError(f"Task(s) {unknown} are not both a model head and a column of train_frame.")
    if train_frame.empty:
        raise ValueError("train_frame has no rows.")
    _check_texts_column(train_frame, "train_frame")
    unlabelled = [task for task in tasks if not train_frame[task].notna().any()]
    if unlabelled:
        raise ValueError(f"train_frame has no labelled row for task(s) {unlabelled}, whose head(s) would stay "
                         "untrained. Add labelled rows, or train the other task(s) only (TrainConfig(tasks=[...])).")
    if config.batch_size < processes:
        raise ValueError(f"batch_size={config.batch_size} is smaller than the {processes} processes that share each batch.")
    if config.track_gradient_conflict and processes > 1:
        raise ValueError("track_gradient_conflict measures one process's gradients: run it in one process.")
    if held_out is None:
        return
    if "text" not in held_out.columns or held_out.empty:
        raise ValueError("held_out has no rows (or no 'text' column); pass None to train without one.")
    _check_texts_column(held_out, "held_out")
    unscored = [task for task in tasks if task not in held_out.columns or not held_out[task].notna().any()]
    if unscored:
        raise ValueError(f"held_out has no labels for trained task(s) {unscored}: their score would be undefined. "
                         "Add labelled rows, train fewer tasks, or pass held_out=None.")


def labelled_rows(frame: pd.DataFrame, tasks: list[str]) -> dict[str, int]:
    """Rows of ``frame`` labelled for each task."""
    return {task: int(frame[task].notna().sum()) if task in frame.columns else 0 for task in tasks}


def process_group() -> tuple[int, int]:
    """``(rank, processes)`` of this process: ``(0, 1)`` unless ``torch.distributed`` was started
    (``torchrun`` with more than one process, and ``init_process_group`` at the program's entry)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


# ----------------------------------------------------------------------------- the loop
@dataclass
class TrainResult:
    """What :func:`train` measured."""

    history: pd.DataFrame
    """One row per epoch: each task's mean training loss, the held-out split's metrics and score
    (columns named after :attr:`selection_split`, e.g. ``validation_topic_macro_f1``), seconds."""

    best_epoch: int
    """The epoch whose weights were kept: the best held-out score, or the last epoch without one."""

    seconds: float
    """Wall time of the whole call, embedding cache included."""

    precision: str
    """The precision the run used (``"auto"`` resolved)."""

    selection_split: str | None
    """What the held-out frame is called in the history; ``None``: there was none."""

    rows: dict[str, dict[str, int]]
    """Labelled rows per task of each split the run read."""

    processes: int = 1
    """Processes that shared each batch."""

    rows_seen: list[int] = field(default_factory=list)
    """Training rows this process ran in each epoch (all processes together run every row once per epoch)."""

    padded_token_ratio: float | None = None
    """Token positions run through the encoder per real token over all steps (1.0: no padding); ``None`` when none ran."""

    gradient_cosines: list[float] = field(default_factory=list)
    """Per step with both tasks, the cosine between their encoder gradients (``track_gradient_conflict``)."""


def train(model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, held_out: pd.DataFrame | None,
          config: TrainConfig, cache: EmbeddingCache | None = None, selection_split: str = "validation") -> TrainResult:
    """Trains the model in place and keeps the weights of the best held-out epoch.

    Args:
        model: The model; its heads (and encoder layers, by ``config``) train from their current weights.
            Its train/eval modes and ``requires_grad`` flags are given back as they were.
        train_frame: ``text``, optional ``source``, and one column per task (``None`` where a row has
            no label for it), e.g. from :func:`~mtt_helpers.data.multitask_frame`.
        held_out: Rows scored after every epoch to pick the epoch to keep (a validation slice of the
            training data; never the set you report on). ``None``: every epoch runs and the last is kept.
        config: The strategy and schedule.
        cache: Where frozen encoder outputs are kept; default a new in-memory cache for this call.
        selection_split: What the history calls the held-out frame.

    Raises:
        ValueError: a task, text, label, held-out set or setting that cannot be used (before any work).
        FloatingPointError: a loss is NaN or infinite; training stops with the weights before that step.
    """
    start = time.perf_counter()
    rank, processes = process_group()
    tasks = config.tasks or [task for task in model.task_names if task in train_frame.columns]
    _check_inputs(model, train_frame, held_out, tasks, config, processes)
    device = model.device
    labels = {task: encode_labels(train_frame, task, model.config.tasks[task]) for task in tasks}
    sources = train_frame["source"].to_numpy() if "source" in train_frame else np.zeros(len(train_frame))
    held_out_texts = held_out["text"].tolist() if held_out is not None else []
    precision = resolve_precision(config.precision, device)
    rng = np.random.default_rng(config.seed)
    history, cosines, padded, real = [], [], 0, 0
    best_score, best_epoch, best_state, stale = -math.inf, 0, None, 0
    with as_found(model), _seeded(config.seed, device):
        set_trainable(model, config.trainable_encoder_layers, tasks)
        inputs = _prepare_inputs(model, train_frame["text"].tolist(), held_out_texts, config, precision,
                                 cache or EmbeddingCache())
        step_precision = "fp32" if inputs.mode == "frozen" else precision  # heads alone: autocast costs more than it saves
        trained = [p for p in model.parameters() if p.requires_grad]
        trained_names = {name for name, p in model.named_parameters() if p.requires_grad}
        encoder_trained = [p for p in model.encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(parameter_groups(model, tasks, config))
        total_steps = config.epochs * config.epoch_steps(len(train_frame))
        schedule = get_linear_schedule_with_warmup(optimizer, math.floor(config.warmup_ratio * total_steps), total_steps)
        scaler = torch.amp.GradScaler(device.type, enabled=step_precision == "fp16")  # fp16 only: scale the loss
        step_forward = _StepForward(model, inputs.mode, inputs.layer)
        if processes > 1:  # averages the gradients of all processes during backward
            step_forward = nn.parallel.DistributedDataParallel(
                step_forward, device_ids=[device.index] if device.type == "cuda" else None,
                find_unused_parameters=True)  # a batch may hold no row of a task: its head gets no gradient
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            set_training_modes(model, config.trainable_encoder_layers)
            batches = batch_indices(sources, config, rng, inputs.counts)
            totals = {task: [0.0, 0] for task in tasks}
            seen = 0
            bar = tqdm(batches, desc=f"epoch {epoch}/{config.epochs}", leave=False,
                       disable=not config.show_progress_bar or rank != 0)
            for step, index in enumerate(bar, 1):
                index = index[rank::processes]  # this process's share of the batch
                seen += len(index)
                if inputs.counts is not None:
                    padded, real = padded + len(index) * int(inputs.counts[index].max()), real + int(inputs.counts[index].sum())
                # The one place where a batch meets the model's device.
                batch = {name: values.to(device) for name, values in inputs.rows(index).items()}
                targets = {task: labels[task][index].to(device) for task in tasks}
                with autocast_context(step_precision, device):
                    logits = step_forward(batch)
                loss, losses = masked_loss(logits, targets, config.loss_weighting, config.task_weights)
                if loss is None:
                    continue  # no row of this batch is labelled for a trained task
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"The loss is {loss.item()} at epoch {epoch}, step {step} of {len(batches)}: "
                                             "training stopped (the weights are those before this step). Lower the "
                                             "learning rates, or train in fp32.")
                for task, value in losses.items():
                    totals[task][0] += value.item()
                    totals[task][1] += 1
                if config.track_gradient_conflict and len(losses) == 2 and encoder_trained:
                    cosines.append(gradient_cosine(losses, encoder_trained))
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # with fp16, the loss is scaled up so small gradients survive
                if config.max_grad_norm is not None:
                    scaler.unscale_(optimizer)  # clip the true gradients
                    torch.nn.utils.clip_grad_norm_(trained, config.max_grad_norm)
                scaler.step(optimizer)  # skipped when a scaled gradient overflowed
                scaler.update()
                schedule.step()
            model.eval()
            row = {"epoch": epoch, **{f"train_loss_{t}": s / n if n else math.nan for t, (s, n) in totals.items()}}
            if held_out is not None:
                with autocast_context(precision, device):
                    metrics = evaluate(model, held_out, tasks, inputs.held_out_embeddings())
                score = selection_score(metrics)
                row.update({f"{selection_split}_{t}_{m}": v for t, values in metrics.items() for m, v in values.items()})
                row[f"{selection_split}_score"] = score
            history.append({**row, "seconds": time.perf_counter() - epoch_start, "rows_seen": seen})
            if held_out is None:
                best_epoch = epoch  # keep the weights as they are: the last epoch's
            elif score > best_score:
                best_score, best_epoch, stale = score, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items() if k in trained_names}
            else:
                stale += 1
                if stale >= config.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state, strict=False)
        optimizer.zero_grad(set_to_none=True)
    split_rows = {"train": labelled_rows(train_frame, tasks)}
    if held_out is not None:
        split_rows[selection_split] = labelled_rows(held_out, tasks)
    frame = pd.DataFrame(history)
    return TrainResult(frame.drop(columns="rows_seen"), best_epoch, time.perf_counter() - start, precision,
                       selection_split if held_out is not None else None, split_rows, processes,
                       frame["rows_seen"].tolist(), padded / real if real else None, cosines)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Draws in the block (dropout masks) follow ``seed``; afterwards the caller's generators hold the
    state they had before (the CPU generator, and the CUDA device's)."""
    on_cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if on_cuda else []):
        torch.manual_seed(seed)
        yield


def train_sequential(model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, held_out: pd.DataFrame | None,
                     first: TrainConfig, second: TrainConfig,
                     cache: EmbeddingCache | None = None) -> tuple[TrainResult, TrainResult]:
    """Trains ``first.tasks`` (encoder layers included), then freezes the encoder and those heads and
    trains ``second.tasks`` on top (``second`` must keep the encoder frozen)."""
    if not first.tasks or not second.tasks:
        raise ValueError("Sequential training needs explicit tasks in both configs.")
    if second.trainable_encoder_layers != 0:
        raise ValueError("The second stage trains heads only: set trainable_encoder_layers=0.")
    stage_one = train(model, train_frame.loc[train_frame[first.tasks].notna().all(axis=1)], held_out, first, cache)
    stage_two = train(model, train_frame.loc[train_frame[second.tasks].notna().all(axis=1)], held_out, second, cache)
    return stage_one, stage_two
