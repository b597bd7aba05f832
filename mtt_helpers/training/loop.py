"""The training loop: one plain loop for every strategy (:func:`train`), and sequential training.

Strategies, all through :func:`train` (:class:`~mtt_helpers.training.config.TrainConfig` picks one):

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
clipping). Every epoch is scored on the held-out frame (dev, or a validation slice of the training
data); the best epoch's weights are kept (early stopping). A NaN or infinite loss stops the run.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from mtt_helpers.data import encode_labels
from mtt_helpers.model import MultiTaskSentenceTransformer
from mtt_helpers.precision import autocast_context, resolve_precision
from mtt_helpers.training.cache import DEFAULT_CACHE, EmbeddingCache
from mtt_helpers.training.checks import check_inputs, labelled_rows
from mtt_helpers.training.config import TrainConfig
from mtt_helpers.training.embedder import BatchEmbedder, make_batch_embedder
from mtt_helpers.training.evaluate import dev_score, evaluate
from mtt_helpers.training.freezing import frozen_and_eval_afterwards, set_trainable, set_training_modes, truncated_to
from mtt_helpers.training.losses import gradient_cosine, task_losses
from mtt_helpers.training.optim import Optimization, make_optimization
from mtt_helpers.training.result import TrainResult
from mtt_helpers.training.rng import torch_seeded
from mtt_helpers.training.sampling import batch_indices, padding_counts


def _train_epoch(model: MultiTaskSentenceTransformer, embedder: BatchEmbedder, batches: list[np.ndarray],
                 labels: dict[str, torch.Tensor], config: TrainConfig, optimization: Optimization,
                 step_precision: str, epoch: int, cosines: list[float]) -> dict[str, list]:
    """Runs one epoch's steps; returns each task's ``[sum of losses, steps]`` and appends gradient cosines.

    Raises:
        FloatingPointError: a loss is NaN or infinite; the step is not taken.
    """
    totals = {task: [0.0, 0] for task in labels}
    desc = f"epoch {epoch}/{config.epochs}"
    for step, index in enumerate(tqdm(batches, desc=desc, disable=not config.show_progress_bar, leave=False), 1):
        with autocast_context(step_precision, model.device):
            logits = model.classify(embedder.embed(index))
        losses = task_losses(logits, {task: target[index] for task, target in labels.items()})
        if not losses:
            continue  # no row of this batch is labelled for a trained task
        for task, value in losses.items():
            loss = value.item()
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"The {task} loss is {loss} at epoch {epoch}, step {step} of {len(batches)}: training stopped "
                    "(the weights are those before this step). Lower the learning rates, or train in fp32.")
            totals[task][0] += loss
            totals[task][1] += 1
        if config.track_gradient_conflict and len(losses) == 2 and optimization.encoder_parameters:
            cosines.append(gradient_cosine(losses, optimization.encoder_parameters))
        optimization.step(sum(config.task_weights.get(task, 1.0) * value for task, value in losses.items()))
    return totals


def train(
    model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, dev_frame: pd.DataFrame | None, config: TrainConfig,
    cache: EmbeddingCache | None = None, selection_split: str = "dev",
) -> TrainResult:
    """Trains the model in place and keeps the weights of the best held-out epoch.

    Args:
        model: The model; its heads are trained from their current weights.
        train_frame: ``text``, optional ``source``, and one column per task (``None``/``NaN``
            where an example has no label for that task), e.g. from ``multitask_frame``.
            Labels are encoded in the order of ``model.config.tasks``, the order predictions
            are decoded with.
        dev_frame: Same columns; scored every epoch to pick the kept epoch, with labels for every
            trained task. ``None``: no held-out set, so every epoch runs and the last one's
            weights are kept (a fixed schedule: use it when the only labelled held-out data is
            the set you report on).
        config: Strategy and hyper-parameters; ``config.seed`` seeds the run's own generators
            (the caller's global random state is left as it was).
        cache: In-memory embedding cache; default the module's shared one.
        selection_split: What ``dev_frame`` is, as the history's columns name it: ``"dev"``, or
            e.g. ``"validation"`` for a slice of the training data (``validation_score``, ...).

    Returns:
        Per-epoch history, best epoch, wall time, gradient cosines, precision, padding, the
        split the epoch was picked on and the labelled rows read. Afterwards, also after an
        error, the model is in eval mode with every parameter frozen. After success it keeps
        ``config.max_seq_length`` (:meth:`~mtt_helpers.model.MultiTaskSentenceTransformer.set_max_seq_length`);
        after an error it has the length it had before.

    Raises:
        ValueError: unusable inputs (:func:`~mtt_helpers.training.checks.check_inputs`), before any work.
        FloatingPointError: a loss became NaN or infinite (the message names the task and step).
    """
    start = time.perf_counter()
    tasks = config.tasks or model.task_names
    if not (isinstance(selection_split, str) and selection_split.isidentifier()):
        raise ValueError(f"selection_split must be a name such as 'dev' or 'validation', got {selection_split!r}.")
    check_inputs(model, train_frame, dev_frame, tasks, config)
    labels = {task: encode_labels(train_frame, task, model.config.tasks[task]) for task in tasks}
    sources = train_frame["source"].to_numpy() if "source" in train_frame else np.zeros(len(train_frame))
    texts = train_frame["text"].tolist()
    dev_texts = dev_frame["text"].tolist() if dev_frame is not None else []
    precision = resolve_precision(config.precision, model.device)
    rng = np.random.default_rng(config.seed)
    with torch_seeded(config.seed, model.device), truncated_to(model, config.max_seq_length), \
            frozen_and_eval_afterwards(model):
        set_trainable(model, config.trainable_encoder_layers, tasks)  # also checks k against the layer count
        embedder = make_batch_embedder(model, texts, dev_texts, config, precision, cache or DEFAULT_CACHE)
        optimization = make_optimization(model, tasks, config, len(train_frame))
        # Heads alone are too small for bf16 to pay: autocast's casts cost more than they save.
        step_precision = "fp32" if embedder.mode == "frozen" else precision
        trained_names = {name for name, p in model.named_parameters() if p.requires_grad}
        best_score, best_epoch, best_state, stale = -math.inf, 0, None, 0
        rows, cosines, padded, real = [], [], 0, 0
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            set_training_modes(model, config.trainable_encoder_layers)
            batches = batch_indices(sources, config, rng, embedder.token_counts)
            if embedder.token_counts is not None:
                epoch_padded, epoch_real = padding_counts(batches, embedder.token_counts)
                padded, real = padded + epoch_padded, real + epoch_real
            totals = _train_epoch(model, embedder, batches, labels, config, optimization, step_precision, epoch,
                                  cosines)
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
            row.update({f"{selection_split}_{t}_{m}": v for t, values in metrics.items() for m, v in values.items()})
            row.update({f"{selection_split}_score": score, "seconds": time.perf_counter() - epoch_start})
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
    if config.max_seq_length is not None:
        model.set_max_seq_length(config.max_seq_length)  # the length it was trained and picked at
    split_rows = {"train": labelled_rows(train_frame, tasks)}
    if dev_frame is not None:
        split_rows[selection_split] = labelled_rows(dev_frame, tasks)
    return TrainResult(pd.DataFrame(rows), best_epoch, time.perf_counter() - start, cosines, precision,
                       float(padded / real) if real else None, selection_split if dev_frame is not None else None,
                       split_rows)


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
