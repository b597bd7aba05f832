"""Training and evaluation of the multi-task model: one plain loop for every strategy.

Strategies, all through :func:`train`:

* **frozen encoder** (``trainable_encoder_layers=0``): embed every text once (cached in
  memory and on disk), then train only the heads on those vectors. Seconds, not minutes.
* **partial fine-tuning** (``trainable_encoder_layers=k``): the top ``k`` transformer
  layers learn too, with their own (smaller) learning rate.
* **joint training**: one loss summed over tasks. A task an example has no label for is
  ``IGNORE_INDEX`` and adds nothing, so datasets that each label one task mix freely.
  ``task_sampling`` decides how often each dataset is drawn when their sizes differ.
* **sequential training**: :func:`train_sequential` trains task A, then freezes the
  encoder and head A and trains head B.

Every epoch is evaluated on dev; the best epoch's weights are kept (early stopping).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from sklearn.metrics import accuracy_score, f1_score, recall_score
from tqdm.auto import tqdm

from mtt_helpers.data import IGNORE_INDEX, TASK_LABELS, encode_labels
from mtt_helpers.model import MultiTaskSentenceTransformer
from mtt_helpers.utils import set_seed

MAIN_METRIC = {"topic": "macro_f1", "sentiment": "macro_recall"}
"""Metric each task is selected on: macro-F1 for topic, macro recall (TweetEval's official) for sentiment."""


# ------------------------------------------------------------------ config
@dataclass
class TrainConfig:
    """How to train a :class:`MultiTaskSentenceTransformer`."""

    tasks: list[str] | None = None
    """Heads to train; ``None`` trains every head. Other heads stay frozen."""

    trainable_encoder_layers: int = 0
    """How many of the encoder's top transformer layers learn; 0 freezes it (cached embeddings)."""

    epochs: int = 3
    """Passes over the training data (see ``steps_per_epoch``)."""

    steps_per_epoch: int | None = None
    """Optimizer steps per epoch; ``None`` means one pass over all training rows."""

    batch_size: int = 32
    """Examples per optimizer step."""

    head_lr: float = 1e-3
    """AdamW learning rate of the heads."""

    encoder_lr: float = 3e-5
    """AdamW learning rate of the unfrozen encoder layers (small: they are pre-trained)."""

    weight_decay: float = 0.01
    """AdamW weight decay for every trained parameter."""

    task_weights: dict[str, float] = field(default_factory=dict)
    """Loss weight per task; missing tasks weigh 1.0."""

    task_sampling: str = "proportional"
    """How batches are drawn when each dataset (``source``) labels one task:
    ``"proportional"``: shuffle all rows together (mixed batches, bigger datasets seen more);
    ``"round_robin"``: alternate datasets, one batch each;
    ``"temperature"``: pick a dataset with probability proportional to ``size ** (1 / T)``."""

    sampling_temperature: float = 2.0
    """``T`` for temperature sampling: 1 is proportional, large values approach uniform."""

    patience: int = 2
    """Stop after this many epochs without a better dev score."""

    seed: int = 0
    """Seeds every shuffle, task draw and dropout mask. (The heads' initial weights are drawn
    when the model is built: call ``set_seed`` before that.)"""

    track_gradient_conflict: bool = False
    """Record the cosine between the two tasks' gradients on the trainable encoder
    parameters at every step that has labels for both (costs an extra backward pass)."""

    show_progress_bar: bool = True
    """Show a tqdm bar per epoch."""

    cache_dir: str | None = ".mtt_cache"
    """Folder for cached frozen embeddings; ``None`` keeps them in memory only."""

    cache_lower_layers: bool = True
    """With ``trainable_encoder_layers=k``, compute the frozen lower layers' output once per
    text (in memory) and run only the top ``k`` layers at each step and dev evaluation.
    Same result up to dropout in the frozen layers (off here), and several times faster."""

    cached_layer: int | None = None
    """Which layer's output to cache; ``None`` means just below the trainable layers. A lower
    layer lets runs with different ``k`` share one cache (the layers in between run frozen)."""

    def __post_init__(self) -> None:
        if self.task_sampling not in ("proportional", "round_robin", "temperature"):
            raise ValueError(f"Unknown task_sampling {self.task_sampling!r}.")
        if self.trainable_encoder_layers < 0:
            raise ValueError("trainable_encoder_layers must be >= 0.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1.")


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


# ------------------------------------------------------------------ caches
# Frozen parts of the encoder give the same output every epoch, so compute it once.
# Both caches are per text, under a fingerprint of the weights that produced the output:
#   _EMBEDDINGS[fingerprint of the whole encoder][text] -> sentence embedding (also on disk)
#   _HIDDEN[(fingerprint of the layers below `layer`, layer)][text] -> (tokens, 384) vectors
_EMBEDDINGS: dict[str, dict[str, torch.Tensor]] = {}
_HIDDEN: dict[tuple[str, int], dict[str, torch.Tensor]] = {}


def _transformer(model: MultiTaskSentenceTransformer) -> torch.nn.Module:
    """The Hugging Face model inside the Sentence Transformer (a BertModel for MiniLM)."""
    return model.encoder[0].auto_model


def encoder_fingerprint(model: MultiTaskSentenceTransformer, below_layer: int | None = None) -> str:
    """A hash of the encoder's weights (all, or only those below ``below_layer``) and max length.

    It changes whenever fine-tuning changes those weights, so a cache never serves
    outputs of an older encoder. Fine-tuning the top layers keeps the lower fingerprints.
    """
    digest = hashlib.sha256(f"{model.encoder.max_seq_length}/{below_layer}".encode())
    if below_layer is None:
        state = model.encoder.state_dict()
    else:
        prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(below_layer)))
        state = {k: v for k, v in _transformer(model).state_dict().items() if k.startswith(prefixes)}
    for name, tensor in state.items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _longest_first(texts: list[str]) -> list[str]:
    """Unique texts, longest first, so that batches pad little."""
    return sorted(dict.fromkeys(texts), key=len, reverse=True)


def cached_hidden_states(
    model: MultiTaskSentenceTransformer, texts: list[str], layer: int, batch_size: int = 64
) -> list[torch.Tensor]:
    """Token vectors after the first ``layer`` transformer layers, one ``(tokens, 384)``
    tensor per text (no padding), computed once per state of those layers, in memory.

    The same encoder pass also fills the sentence-embedding cache.
    """
    store = _HIDDEN.setdefault((encoder_fingerprint(model, layer), layer), {})
    missing = _longest_first([t for t in texts if _text_key(t) not in store])
    if missing:
        embeddings = _EMBEDDINGS.setdefault(encoder_fingerprint(model), {})
        bert = _transformer(model)
        source = bert.embeddings if layer == 0 else bert.encoder.layer[layer - 1]
        captured = []
        hook = source.register_forward_hook(
            lambda module, inputs, output: captured.append(output[0] if isinstance(output, tuple) else output)
        )
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(missing), batch_size):
                    batch = missing[start : start + batch_size]
                    features = model.tokenize(batch)
                    sentence_embeddings = model.encode_features(features).cpu()
                    hidden = captured.pop()
                    for i, text in enumerate(batch):
                        length = int(features["attention_mask"][i].sum())
                        store[_text_key(text)] = hidden[i, :length].cpu().clone()
                        embeddings[_text_key(text)] = sentence_embeddings[i].clone()
        finally:
            hook.remove()
            model.train(was_training)
    return [store[_text_key(t)] for t in texts]


def cached_embeddings(
    model: MultiTaskSentenceTransformer, texts: list[str], cache_dir: str | None = ".mtt_cache", batch_size: int = 64
) -> torch.Tensor:
    """Sentence embeddings of ``texts`` by the model's current encoder, computed once.

    Cached per text in memory and, with ``cache_dir``, on disk (a safetensors file named
    after :func:`encoder_fingerprint`). Texts whose lower-layer outputs are cached (after
    top-layer fine-tuning, say) only run the layers above; others run the whole encoder.
    """
    fingerprint = encoder_fingerprint(model)
    store = _EMBEDDINGS.setdefault(fingerprint, {})
    path = Path(cache_dir) / f"{fingerprint}.safetensors" if cache_dir else None
    if path is not None and not store and path.is_file():
        store.update(load_file(path))
    missing = _longest_first([t for t in texts if _text_key(t) not in store])
    if missing:
        keys = [_text_key(t) for t in missing]
        for (lower, layer), hidden in list(_HIDDEN.items()):
            if all(k in hidden for k in keys) and lower == encoder_fingerprint(model, layer):
                was_training = model.training
                model.eval()
                with torch.no_grad():
                    for start in range(0, len(keys), batch_size):
                        chunk = keys[start : start + batch_size]
                        vectors = embed_from_layer(model, [hidden[k] for k in chunk], layer).cpu()
                        store.update({k: v.clone() for k, v in zip(chunk, vectors)})
                model.train(was_training)
                break
        else:
            vectors = model.embed(missing, batch_size=batch_size)
            store.update({_text_key(t): v.clone() for t, v in zip(missing, vectors)})
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file(store, path)
    return torch.stack([store[_text_key(t)] for t in texts])


def embed_from_layer(model: MultiTaskSentenceTransformer, hidden: list[torch.Tensor], layer: int) -> torch.Tensor:
    """Runs transformer layers ``layer..end`` on cached token vectors, then mean pooling and
    L2 normalisation: the same embedding the full encoder gives (checked in the tests)."""
    lengths = torch.tensor([h.shape[0] for h in hidden])
    states = torch.nn.utils.rnn.pad_sequence(hidden, batch_first=True).to(model.device)
    mask = (torch.arange(states.shape[1])[None, :] < lengths[:, None]).to(model.device)
    # Additive attention mask, (batch, 1, 1, tokens): 0 where attended, -inf-like on padding.
    additive = (~mask)[:, None, None, :].to(states.dtype) * torch.finfo(states.dtype).min
    for block in _transformer(model).encoder.layer[layer:]:
        output = block(states, additive)
        states = output[0] if isinstance(output, tuple) else output  # transformers 4.x returns a tuple
    weights = mask.unsqueeze(-1).to(states.dtype)
    pooled = (states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, p=2, dim=1)


# -------------------------------------------------------------- freezing
def set_trainable(model: MultiTaskSentenceTransformer, encoder_layers: int, tasks: list[str]) -> None:
    """Freezes everything, then unfreezes the top ``encoder_layers`` layers and the heads of ``tasks``."""
    for parameter in model.parameters():
        parameter.requires_grad = False
    layers = model.encoder[0].auto_model.encoder.layer
    if encoder_layers > len(layers):
        raise ValueError(f"The encoder has {len(layers)} layers; cannot unfreeze {encoder_layers}.")
    for layer in layers[len(layers) - encoder_layers :]:
        for parameter in layer.parameters():
            parameter.requires_grad = True
    for task in tasks:
        for parameter in model.heads[task].parameters():
            parameter.requires_grad = True


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


def predict_labels(
    model: MultiTaskSentenceTransformer, texts: list[str], task: str, embeddings: torch.Tensor | None = None
) -> list[str]:
    """Predicted label names for one task, from texts or from precomputed embeddings."""
    model.eval()
    with torch.no_grad():
        if embeddings is not None:
            logits = model.heads[task](embeddings.to(model.device)).cpu()
        else:
            logits = model.predict_logits(texts)[task]
    labels = model.config.tasks[task]
    return [labels[i] for i in logits.argmax(dim=1).tolist()]


def evaluate(
    model: MultiTaskSentenceTransformer, frame: pd.DataFrame, tasks: list[str] | None = None,
    embeddings: torch.Tensor | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics per task on the rows of ``frame`` labelled for that task.

    Args:
        model: The model.
        frame: Columns ``text`` and one per task (``None`` where unlabelled).
        tasks: Tasks to score; default every model task with a column in ``frame``.
        embeddings: Precomputed embeddings of ``frame.text`` (frozen encoder), optional.
    """
    tasks = tasks or [t for t in model.task_names if t in frame.columns]
    results = {}
    for task in tasks:
        mask = frame[task].notna().to_numpy()
        if not mask.any():
            continue
        texts = frame["text"][mask].tolist()
        sub_embeddings = embeddings[torch.tensor(mask)] if embeddings is not None else None
        predicted = predict_labels(model, texts, task, sub_embeddings)
        results[task] = task_metrics(frame[task][mask].tolist(), predicted, model.config.tasks[task])
    return results


def dev_score(metrics: dict[str, dict[str, float]]) -> float:
    """Mean over tasks of each task's main metric: what early stopping maximises."""
    return float(np.mean([metrics[task][MAIN_METRIC[task]] for task in metrics]))


# --------------------------------------------------------------- batching
def batch_indices(sources: np.ndarray, config: TrainConfig, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of each step of one epoch, following ``config.task_sampling``."""
    n_rows = len(sources)
    steps = config.steps_per_epoch or math.ceil(n_rows / config.batch_size)
    if config.task_sampling == "proportional":
        order = np.concatenate([rng.permutation(n_rows) for _ in range(math.ceil(steps * config.batch_size / n_rows))])
        return [order[i * config.batch_size : (i + 1) * config.batch_size] for i in range(steps)]
    names, counts = np.unique(sources, return_counts=True)
    pools = {name: np.flatnonzero(sources == name) for name in names}
    queues = {name: rng.permutation(pools[name]) for name in names}
    if config.task_sampling == "round_robin":
        picks = [names[i % len(names)] for i in range(steps)]
    else:
        weights = counts ** (1.0 / config.sampling_temperature)
        picks = rng.choice(names, size=steps, p=weights / weights.sum())
    batches = []
    for name in picks:
        if len(queues[name]) < config.batch_size:  # refill with a fresh shuffle
            queues[name] = np.concatenate([queues[name], rng.permutation(pools[name])])
        batches.append(queues[name][: config.batch_size])
        queues[name] = queues[name][config.batch_size :]
    return batches


def _gradient_cosine(losses: dict[str, torch.Tensor], parameters: list[torch.nn.Parameter]) -> float:
    """Cosine between the two tasks' gradients on ``parameters``."""
    flat = []
    for loss in losses.values():
        grads = torch.autograd.grad(loss, parameters, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten() for g, p in zip(grads, parameters)]))
    return F.cosine_similarity(flat[0], flat[1], dim=0).item()


# ------------------------------------------------------------------ train
def train(
    model: MultiTaskSentenceTransformer, train_frame: pd.DataFrame, dev_frame: pd.DataFrame | None, config: TrainConfig
) -> TrainResult:
    """Trains the model in place and keeps the weights of the best dev epoch.

    Args:
        model: The model; its heads are trained from their current weights.
        train_frame: ``text``, optional ``source``, and one column per task (``None``
            where an example has no label for that task), e.g. from ``multitask_frame``.
        dev_frame: Same columns; scored every epoch. ``None``: no dev set, so every epoch
            runs and the last one's weights are kept (a fixed schedule: use it when the
            only labelled held-out data is the set you report on).
        config: Strategy and hyper-parameters.

    Returns:
        Per-epoch history, best epoch, wall time, gradient cosines.
    """
    start = time.perf_counter()
    tasks = config.tasks or model.task_names
    unknown = [task for task in tasks if task not in model.config.tasks or task not in train_frame.columns]
    if unknown:
        raise ValueError(f"Task(s) {unknown} are not both a model head and a column of train_frame.")
    if train_frame.empty:
        raise ValueError("train_frame has no rows.")
    set_seed(config.seed)
    rng = np.random.default_rng(config.seed)

    frozen = config.trainable_encoder_layers == 0
    texts = train_frame["text"].tolist()
    dev_texts = dev_frame["text"].tolist() if dev_frame is not None else []
    labels = {task: encode_labels(train_frame, task) for task in tasks}
    sources = train_frame["source"].to_numpy() if "source" in train_frame else np.zeros(len(train_frame))
    set_trainable(model, config.trainable_encoder_layers, tasks)  # also checks k against the layer count
    n_layers = len(_transformer(model).encoder.layer)
    start_layer = n_layers - config.trainable_encoder_layers
    if config.cached_layer is not None:
        if not 0 <= config.cached_layer <= start_layer:
            raise ValueError(f"cached_layer must be between 0 and {start_layer} (below the trainable layers).")
        start_layer = config.cached_layer
    layered = not frozen and config.cache_lower_layers
    # Frozen encoder: every epoch sees the same vectors, so compute them once. Partly frozen:
    # the same holds for the output of the frozen lower layers.
    if frozen:
        train_vectors = cached_embeddings(model, texts, config.cache_dir)
        dev_vectors = cached_embeddings(model, dev_texts, config.cache_dir) if dev_texts else None
    elif layered:
        train_hidden = cached_hidden_states(model, texts, start_layer)
        dev_hidden = cached_hidden_states(model, dev_texts, start_layer) if dev_texts else []

    def embed_batch(index: np.ndarray) -> torch.Tensor:
        if frozen:
            return train_vectors[index].to(model.device)
        if layered:
            return embed_from_layer(model, [train_hidden[i] for i in index], start_layer)
        return model.encode_features(model.tokenize([texts[i] for i in index]))

    def dev_embeddings() -> torch.Tensor | None:
        if frozen:
            return dev_vectors
        if not layered:
            return None  # evaluate() runs the full model
        with torch.no_grad():
            return torch.cat([
                embed_from_layer(model, dev_hidden[i : i + 128], start_layer).cpu()
                for i in range(0, len(dev_hidden), 128)
            ])

    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    head_params = [p for task in tasks for p in model.heads[task].parameters()]
    groups = [{"params": head_params, "lr": config.head_lr}]
    if encoder_params:
        groups.append({"params": encoder_params, "lr": config.encoder_lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)

    trained_names = {name for name, p in model.named_parameters() if p.requires_grad}
    best_score, best_epoch, best_state, stale = -1.0, 0, None, 0
    rows, cosines = [], []
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        if frozen:
            model.encoder.eval()
        totals = {task: [0.0, 0] for task in tasks}
        steps = batch_indices(sources, config, rng)
        for index in tqdm(steps, desc=f"epoch {epoch}", disable=not config.show_progress_bar, leave=False):
            outputs = model.classify(embed_batch(index))
            losses = {}
            for task in tasks:
                target = labels[task][index].to(model.device)
                if (target != IGNORE_INDEX).any():  # a batch with no label for this task adds nothing
                    losses[task] = F.cross_entropy(outputs[task], target, ignore_index=IGNORE_INDEX)
                    totals[task][0] += losses[task].item()
                    totals[task][1] += 1
            if not losses:
                continue
            if config.track_gradient_conflict and len(losses) == 2 and encoder_params:
                cosines.append(_gradient_cosine(losses, encoder_params))
            loss = sum(config.task_weights.get(task, 1.0) * value for task, value in losses.items())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        model.eval()
        row = {"epoch": epoch}
        row.update({f"train_loss_{t}": s / n if n else float("nan") for t, (s, n) in totals.items()})
        if dev_frame is None:
            row["seconds"] = time.perf_counter() - epoch_start
            rows.append(row)
            best_epoch, best_state = epoch, None  # keep the weights as they are: the last epoch's
            continue
        metrics = evaluate(model, dev_frame, tasks, dev_embeddings())
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
    set_trainable(model, 0, [])
    model.eval()
    return TrainResult(pd.DataFrame(rows), best_epoch, time.perf_counter() - start, cosines)


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
