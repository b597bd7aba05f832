"""Chapter 04: methods for a task with few labels, collected: text augmentation, contrastive tuning,
self-training, and the SetFit library run as its users run it.

* **Augmentation** (:func:`random_edit`, :class:`NeighbourWords`, :func:`augment_frame`): label-preserving
  variants of the few labelled texts. :func:`random_edit`, in the style of EDA (Wei & Zou, 2019), deletes
  a few random words and swaps a few pairs: cheap and blind. :class:`NeighbourWords` replaces a few content
  words with words whose input token embedding in the encoder is close (no thesaurus needed, but a close
  neighbour is not always a synonym: "good" sits near "bad").
* **Contrastive tuning** (:func:`pair_loss`, :func:`contrastive_tune`): SetFit's first phase, our way:
  tune the encoder's top layers so that texts of the same label embed close together and texts of
  different labels apart, then train the usual head on the tuned, frozen encoder.
* **Self-training** (:func:`pseudo_labels`, :func:`self_train`): label plentiful *unlabelled* texts with
  the head trained on the few labels, keep the confident ones (balanced per class), train again.
* **The recipe** (:class:`FewLabelRecipe`, :func:`few_label_recipe`): contrastive tuning, heads on the
  tuned encoder, then joint fine-tuning with a related task; chapter 04 measures it.
* **SetFit** (:func:`train_setfit`): the library, as its documentation shows; :func:`setfit_default_steps`
  gives the pair steps of its defaults, so a shorter run can be named by its share of them.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import logging
import math
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from transformers import get_linear_schedule_with_warmup

from mtt_core.predictions import is_text
from mtt_helpers.data import multitask_frame
from mtt_helpers.embedding_cache import EmbeddingCache
from mtt_helpers.model import MultiTaskSentenceTransformer, eval_mode, pad_token_vectors
from mtt_helpers.precision import PRECISION_SETTINGS, autocast_context, resolve_precision
from mtt_helpers.training import TrainConfig, TrainResult, as_found, train

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- augmentation
NEGATIONS = frozenset({"not", "no", "never", "nor", "nothing", "none", "nobody", "without", "n't", "cannot"})
"""Words that flip a sentence's sentiment: :func:`random_edit` never deletes them, and
:class:`NeighbourWords` never replaces them."""

_WORD = re.compile(r"^([^\w@#]*)([A-Za-z]+)(\W*)$")
"""A word with punctuation around it; not an @mention or #hashtag."""


def _check_text(text: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"Expected a string, got {type(text).__name__}: {text!r}")
    if not is_text(text):
        raise ValueError("Cannot augment an empty or whitespace-only text.")
    return text.split()


def _is_negation(word: str) -> bool:
    lowered = word.lower().strip(".,!?;:\"'()")
    return lowered in NEGATIONS or lowered.endswith("n't")


def random_edit(text: str, rng: np.random.Generator, delete_prob: float = 0.1, swaps: int = 1) -> str:
    """Deletes each word with probability ``delete_prob`` (never a negation, never every
    word), then swaps ``swaps`` random pairs of words.

    Args:
        text: The sentence.
        rng: Source of randomness (``np.random.default_rng(seed)``).
        delete_prob: Chance that each word is dropped.
        swaps: How many random pairs of positions to exchange.

    Returns:
        The edited sentence (may equal ``text`` for very short inputs).
    """
    if not 0 <= delete_prob < 1:
        raise ValueError(f"delete_prob must be in [0, 1), got {delete_prob}.")
    if swaps < 0:
        raise ValueError(f"swaps must be >= 0, got {swaps}.")
    words = _check_text(text)
    drop = rng.random(len(words)) < delete_prob
    kept = [w for w, d in zip(words, drop) if not d or _is_negation(w)]
    if not kept:  # deleting everything would leave no sentence: keep one word
        kept = [words[int(rng.integers(len(words)))]]
    for _ in range(swaps if len(kept) > 1 else 0):
        i, j = rng.choice(len(kept), size=2, replace=False)
        kept[i], kept[j] = kept[j], kept[i]
    return " ".join(kept)


class NeighbourWords:
    """Replaces content words with near neighbours in the encoder's token-embedding space.

    The vocabulary is the encoder's WordPiece vocabulary restricted to whole alphabetic
    words of at least ``min_length`` letters that are not stop words. A word of a sentence is
    eligible when it is in that vocabulary and not a negation (so ``#hashtags``, ``@mentions``,
    numbers and rare words stay as they are).

    Args:
        encoder: The Sentence Transformer whose tokenizer and input embeddings to use.
        top_k: Replacements are drawn uniformly from this many nearest neighbours.
        min_length: Shortest word that may be replaced or used as a replacement.
    """

    def __init__(self, encoder: SentenceTransformer, top_k: int = 5, min_length: int = 3) -> None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}.")
        import torch.nn.functional as F

        transformer = encoder[0]
        vocabulary = transformer.tokenizer.get_vocab()
        table = transformer.auto_model.get_input_embeddings().weight.detach().float().cpu()
        words = sorted(
            (word for word in vocabulary
             if word.isascii() and word.isalpha() and len(word) >= min_length
             and word not in ENGLISH_STOP_WORDS and word not in NEGATIONS),
            key=vocabulary.get,
        )
        self.top_k = top_k
        self.words = words
        self.index = {word: i for i, word in enumerate(words)}
        self.vectors = F.normalize(table[[vocabulary[w] for w in words]], dim=1)
        self._neighbours: dict[str, list[tuple[str, float]]] = {}

    def neighbours(self, word: str) -> list[tuple[str, float]]:
        """The ``top_k`` nearest vocabulary words to ``word`` (lower-cased) with their cosine.

        Raises:
            KeyError: ``word`` is not in the vocabulary.
        """
        word = word.lower()
        if word not in self.index:
            raise KeyError(f"{word!r} is not a replaceable word of the vocabulary.")
        if word not in self._neighbours:
            similarity = self.vectors @ self.vectors[self.index[word]]
            similarity[self.index[word]] = -1.0  # never the word itself
            values, indices = similarity.topk(self.top_k)
            self._neighbours[word] = [(self.words[i], round(v, 4)) for i, v in zip(indices.tolist(), values.tolist())]
        return self._neighbours[word]

    def __call__(self, text: str, rng: np.random.Generator, fraction: float = 0.2) -> str:
        """Replaces ``fraction`` of the eligible words (at least one, if any) of ``text``.

        Args:
            text: The sentence.
            rng: Source of randomness.
            fraction: Share of eligible words to replace.

        Returns:
            The sentence with replacements; capitalisation and punctuation around a word kept.
        """
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}.")
        words = _check_text(text)
        eligible = []
        for position, word in enumerate(words):
            match = _WORD.match(word)
            if match and match.group(2).lower() in self.index:
                eligible.append(position)
        if not eligible:
            return text
        count = max(1, round(fraction * len(eligible)))
        for position in sorted(rng.choice(eligible, size=count, replace=False)):
            before, core, after = _WORD.match(words[position]).groups()
            candidates = self.neighbours(core)
            replacement = candidates[int(rng.integers(len(candidates)))][0]
            if core[0].isupper():
                replacement = replacement.upper() if core.isupper() and len(core) > 1 else replacement.capitalize()
            words[position] = before + replacement + after
        return " ".join(words)


def _text_seed(seed: int, text: str, copy: int) -> list[int]:
    return [seed, int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:12], 16), copy]


def augment_frame(
    frame: pd.DataFrame,
    augment: Callable[[str, np.random.Generator], str],
    copies: int = 2,
    seed: int = 0,
    text_column: str = "text",
) -> pd.DataFrame:
    """The rows of ``frame`` plus up to ``copies`` augmented variants of each.

    Every other column (the labels) is copied unchanged to the variants. A variant equal to
    its original or to an earlier variant is dropped.

    Args:
        frame: Labelled examples.
        augment: ``augment(text, rng) -> text``, e.g. :func:`random_edit` or a :class:`NeighbourWords`.
        copies: Variants to make per row.
        seed: Fixes every variant (together with the text itself).
        text_column: The column holding the text.

    Returns:
        Originals first, then variants; column ``augmented`` tells which is which.
    """
    if text_column not in frame.columns:
        raise ValueError(f"No column {text_column!r}; columns are {list(frame.columns)}.")
    if frame.empty:
        raise ValueError("Nothing to augment: the frame has no rows.")
    if copies < 0:
        raise ValueError(f"copies must be >= 0, got {copies}.")
    originals = frame.reset_index(drop=True).assign(augmented=False)
    rows = []
    for _, row in originals.iterrows():
        seen = {row[text_column]}
        for copy in range(copies):
            variant = augment(row[text_column], np.random.default_rng(_text_seed(seed, row[text_column], copy)))
            if variant not in seen:
                seen.add(variant)
                rows.append({**row.to_dict(), text_column: variant, "augmented": True})
    variants = pd.DataFrame(rows, columns=originals.columns)
    return pd.concat([originals, variants], ignore_index=True)


# ----------------------------------------------------------------------------- contrastive tuning
def pair_loss(embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """SetFit's contrastive idea in a few lines: over every pair of texts in the batch, the cosine of
    their embeddings should be 1 when they share a label and 0 when they do not (mean squared error).

    Args:
        embeddings: ``(batch, dim)`` sentence embeddings (normalised or not).
        labels: ``(batch,)`` class ids on the same device.
    """
    normalised = F.normalize(embeddings.float(), dim=1)
    cosines = normalised @ normalised.T
    same = (labels[:, None] == labels[None, :]).float()
    pairs = torch.triu(torch.ones_like(same, dtype=torch.bool), diagonal=1)  # each pair once, no text with itself
    return F.mse_loss(cosines[pairs], same[pairs])


@dataclass
class ContrastiveConfig:
    """How :func:`contrastive_tune` tunes the encoder (the head is trained afterwards)."""

    trainable_encoder_layers: int = 2
    """How many top transformer layers learn (>= 1); the layers below stay frozen and run once per text."""

    steps: int = 40
    """Optimizer steps; each draws a class-balanced batch and uses every pair in it."""

    batch_size: int = 32
    """Texts per step, split evenly over the classes (a class with fewer texts than its share is drawn with replacement)."""

    encoder_lr: float = 5e-5
    """Peak AdamW learning rate of the trained layers (linear warmup, then linear decay to 0)."""

    warmup_ratio: float = 0.1
    """Share of ``steps`` over which the learning rate rises from 0."""

    max_grad_norm: float | None = 1.0
    """Clip the trained layers' gradient norm to this; ``None``: no clipping."""

    precision: str = "auto"
    """``"fp32"``, ``"bf16"`` or ``"auto"`` (:func:`~mtt_helpers.precision.resolve_precision`)."""

    seed: int = 0
    """Seeds the batch draws and dropout, with generators of the run's own."""

    def __post_init__(self) -> None:
        checks = [
            (isinstance(self.trainable_encoder_layers, int) and not isinstance(self.trainable_encoder_layers, bool)
             and self.trainable_encoder_layers >= 1,
             f"trainable_encoder_layers must be an int >= 1, got {self.trainable_encoder_layers!r}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}"),
            (self.encoder_lr > 0, f"encoder_lr must be > 0, got {self.encoder_lr}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}"),
            (self.max_grad_norm is None or self.max_grad_norm > 0,
             f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}"),
            (self.precision in PRECISION_SETTINGS, f"precision must be one of {PRECISION_SETTINGS}, got {self.precision!r}"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError("Invalid ContrastiveConfig: " + "; ".join(problems) + ".")


def balanced_batch(class_ids: np.ndarray, batch_size: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices of one class-balanced batch: ``batch_size // classes`` rows of each class (at least 2),
    drawn without replacement where the class has enough rows."""
    members = [np.flatnonzero(class_ids == c) for c in np.unique(class_ids)]
    per_class = max(2, batch_size // len(members))
    return np.concatenate([rng.choice(ids, per_class, replace=len(ids) < per_class) for ids in members])


def contrastive_tune(model: MultiTaskSentenceTransformer, texts: list[str], labels: list,
                     config: ContrastiveConfig | None = None, cache: EmbeddingCache | None = None,
                     loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = pair_loss) -> list[float]:
    """Tunes the top layers of ``model``'s encoder in place with :func:`pair_loss`, so that same-label texts
    embed close together. The layers below run once per text (``cache``); only the top ones run each step.

    Args:
        model: Its encoder changes in place (pass a copy to keep the original); modes and
            ``requires_grad`` flags are given back as they were.
        texts: Labelled training texts.
        labels: One label per text (any hashable values); at least 2 classes, one with 2 texts or more.
        config: The schedule; default :class:`ContrastiveConfig`.
        cache: Where the lower layers' token vectors are kept; default a new in-memory cache.
        loss: ``(embeddings, label ids) -> loss`` of one batch; default :func:`pair_loss` (every pair).
            A pair-mining rule goes here.

    Returns:
        The loss of every step, in order.

    Raises:
        ValueError: lengths differ, fewer than 2 classes, no class with 2 texts, or more layers than the encoder has.
    """
    config = config or ContrastiveConfig()
    texts, labels = list(texts), list(labels)
    if len(texts) != len(labels):
        raise ValueError(f"texts and labels must have the same length, got {len(texts)} and {len(labels)}.")
    classes, class_ids = np.unique(np.asarray(labels, dtype=object).astype(str), return_inverse=True)
    counts = np.bincount(class_ids)
    if len(classes) < 2 or counts.max() < 2:
        raise ValueError(f"contrastive tuning needs >= 2 classes and a class with >= 2 texts; got counts "
                         f"{dict(zip(classes.tolist(), counts.tolist()))}.")
    blocks = model.transformer.encoder.layer
    if config.trainable_encoder_layers > len(blocks):
        raise ValueError(f"trainable_encoder_layers={config.trainable_encoder_layers} but the encoder has {len(blocks)} layers.")
    first = len(blocks) - config.trainable_encoder_layers
    hidden = (cache or EmbeddingCache()).hidden_states(model, texts, first, config.precision)
    device, rng, losses = model.device, np.random.default_rng(config.seed), []
    with as_found(model), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        model.requires_grad_(False)
        model.eval()
        for block in blocks[first:]:
            block.requires_grad_(True)
            block.train()  # dropout in the trained layers only
        parameters = [p for block in blocks[first:] for p in block.parameters()]
        optimizer = torch.optim.AdamW(parameters, lr=config.encoder_lr)
        schedule = get_linear_schedule_with_warmup(optimizer, math.floor(config.warmup_ratio * config.steps), config.steps)
        for _ in range(config.steps):
            index = balanced_batch(class_ids, config.batch_size, rng)
            states, mask = pad_token_vectors([hidden[i] for i in index])
            states, mask = states.to(device), mask.to(device)
            targets = torch.as_tensor(class_ids[index], device=device)
            with autocast_context(config.precision, device):
                embeddings = model.encode_from_layer(states, mask, first)
            step_loss = loss(embeddings, targets)
            optimizer.zero_grad(set_to_none=True)
            step_loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
            optimizer.step()
            schedule.step()
            losses.append(step_loss.item())
        optimizer.zero_grad(set_to_none=True)
    return losses


# ----------------------------------------------------------------------------- self-training
@dataclass
class SelfTrainingConfig:
    """How pseudo-labels are chosen."""

    threshold: float = 0.7
    """Keep a pseudo-label only when the head's probability for it is at least this."""

    per_class: int = 200
    """Keep at most this many pseudo-labels per predicted class, the most confident first (so the
    majority class does not swamp the others)."""

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {self.threshold}.")
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}.")


def pseudo_labels(model: MultiTaskSentenceTransformer, texts: list[str], task: str, config: SelfTrainingConfig,
                  cache: EmbeddingCache | None = None, precision: str = "auto") -> pd.DataFrame:
    """The confident predictions of the ``task`` head on ``texts``, at most ``per_class`` per class.

    Returns:
        ``text``, ``label`` (the predicted class) and ``confidence``, most confident first.
    """
    if not texts:
        raise ValueError("No unlabelled texts to pseudo-label.")
    vectors = (cache or EmbeddingCache()).embeddings(model, texts, precision)
    with eval_mode(model), torch.no_grad():
        probabilities = torch.softmax(model.heads[task](vectors.to(model.device)).float(), dim=1).cpu()
    confidence, predicted = probabilities.max(dim=1)
    frame = pd.DataFrame({"text": texts, "label": [model.config.tasks[task][i] for i in predicted.tolist()],
                          "confidence": confidence.numpy()}).drop_duplicates("text")
    frame = frame[frame["confidence"] >= config.threshold].sort_values("confidence", ascending=False, kind="stable")
    return frame.groupby("label", sort=False).head(config.per_class).reset_index(drop=True)


def self_train(model: MultiTaskSentenceTransformer, labelled: pd.DataFrame, unlabelled_texts: list[str], task: str,
               train_config: TrainConfig, config: SelfTrainingConfig | None = None,
               cache: EmbeddingCache | None = None) -> tuple[TrainResult, pd.DataFrame]:
    """One round of self-training of the ``task`` head, in place (the encoder stays frozen): train on
    ``labelled`` (``text``, ``label``), pseudo-label ``unlabelled_texts``, then train again from the
    head's starting weights on labelled + pseudo-labelled rows.

    Returns:
        The second run's result (the first's when nothing was confident enough) and the pseudo-labels.
    """
    config = config or SelfTrainingConfig()
    if train_config.trainable_encoder_layers != 0:
        raise ValueError("self_train keeps the encoder frozen: set trainable_encoder_layers=0.")
    if task not in model.config.tasks:
        raise ValueError(f"Unknown task {task!r}; the model has {model.task_names}.")
    cache = cache or EmbeddingCache()
    train_config = dataclasses.replace(train_config, tasks=[task])
    start = copy.deepcopy(model.heads[task].state_dict())
    result = train(model, multitask_frame(**{task: labelled}), None, train_config, cache)
    known = set(labelled["text"])
    pool = [text for text in unlabelled_texts if text not in known]
    pseudo = pseudo_labels(model, pool, task, config, cache, train_config.precision) if pool else pd.DataFrame(
        columns=["text", "label", "confidence"])
    if not pseudo.empty:  # nothing confident enough: keep the head trained on the labels alone
        model.heads[task].load_state_dict(start)
        combined = pd.concat([labelled[["text", "label"]], pseudo[["text", "label"]]], ignore_index=True)
        result = train(model, multitask_frame(**{task: combined}), None, train_config, cache)
    return result, pseudo


# ----------------------------------------------------------------------------- the recipe
@dataclass
class FewLabelRecipe:
    """Chapter 04's recipe for a task with few labels, in three phases over the encoder's top layers:
    contrastive tuning on the labelled texts (:func:`contrastive_tune`); new heads for the task and the
    related task on the tuned, frozen encoder; then both tasks fine-tuned together, round robin."""

    task: str = "sentiment"
    """The task with few labels."""

    related_task: str = "finance"
    """A task with plentiful labels and a meaning close to ``task``'s (its own head and dataset)."""

    trainable_encoder_layers: int = 2
    """Top transformer layers that learn in the contrastive and the joint phase."""

    contrastive_steps: int = 40
    """Steps of contrastive tuning (batches of 32 texts)."""

    joint_steps: int = 80
    """Steps of joint fine-tuning (batches of 16), alternating between the two tasks: half are the task's."""

    encoder_lr: float = 1e-4
    """Peak learning rate of the top layers in the joint phase."""

    head_epochs: int = 30
    """Epochs of the task's head on the tuned, frozen encoder, of ``ceil(n / 16)`` steps of 16."""

    seed: int = 0
    """Seeds every phase."""

    @property
    def encoder_steps(self) -> int:
        """Optimizer steps that change the encoder, all phases: the recipe's budget."""
        return self.contrastive_steps + self.joint_steps


def few_label_recipe(model: MultiTaskSentenceTransformer, labelled: pd.DataFrame, related: pd.DataFrame,
                     recipe: FewLabelRecipe | None = None, cache: EmbeddingCache | None = None) -> MultiTaskSentenceTransformer:
    """Trains ``model`` in place by :class:`FewLabelRecipe` and returns it.

    Args:
        model: Has heads for ``recipe.task`` and ``recipe.related_task``; its encoder and both heads change.
        labelled: The few labelled texts, ``text`` and ``label``.
        related: The related task's rows, a :func:`~mtt_helpers.data.multitask_frame` with a
            ``recipe.related_task`` column.
        recipe: Default :class:`FewLabelRecipe`.
        cache: Where the lower layers' token vectors are kept; default a new in-memory cache.
    """
    recipe, cache = recipe or FewLabelRecipe(), cache or EmbeddingCache()
    task, related_task, k = recipe.task, recipe.related_task, recipe.trainable_encoder_layers
    for name in (task, related_task):
        if name not in model.config.tasks:
            raise ValueError(f"The model has no {name!r} head; its tasks are {model.task_names}.")
    if related_task not in related.columns or not related[related_task].notna().any():
        raise ValueError(f"related has no labelled {related_task!r} column; its columns are {list(related.columns)}.")
    few = multitask_frame({task: model.config.tasks[task]}, **{task: labelled[["text", "label"]]})
    contrastive_tune(model, labelled["text"].tolist(), labelled["label"].tolist(),
                     ContrastiveConfig(trainable_encoder_layers=k, steps=recipe.contrastive_steps, seed=recipe.seed), cache)
    train(model, few, None, TrainConfig(tasks=[task], epochs=recipe.head_epochs, steps_per_epoch=-(-len(few) // 16),
                                        batch_size=16, seed=recipe.seed, show_progress_bar=False), cache)
    train(model, related, None, TrainConfig(tasks=[related_task], epochs=10, batch_size=32, seed=recipe.seed,
                                            show_progress_bar=False), cache)
    train(model, pd.concat([few, related], ignore_index=True), None, TrainConfig(
        tasks=[task, related_task], trainable_encoder_layers=k, epochs=1, batch_size=16,
        steps_per_epoch=recipe.joint_steps, task_sampling="round_robin", encoder_lr=recipe.encoder_lr,
        seed=recipe.seed, show_progress_bar=False), cache)
    return model


# ----------------------------------------------------------------------------- SetFit
DEFAULT_PAIR_BATCH = 16
"""SetFit's default batch size of the pair (embedding) phase: ``TrainingArguments.batch_size[0]``."""


def setfit_default_steps(labels: Sequence[object], batch_size: int = DEFAULT_PAIR_BATCH) -> int:
    """Pair steps SetFit's default ``TrainingArguments`` take on examples with these labels.

    The defaults (setfit 1.x: ``max_steps=-1``, ``num_iterations=None``, ``sampling_strategy="oversampling"``,
    ``num_epochs=(1, 16)``, ``batch_size=(16, 2)``) build every pair of examples, a text with itself
    included (same label: positive, else negative); oversampling repeats the smaller kind until both
    counts equal the larger; one epoch of batches of ``batch_size`` pairs follows.
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

    def embed(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """The tuned body's sentence embeddings."""
        with autocast_context(self.precision, self.model.model_body.device):
            return np.asarray(self.model.model_body.encode(texts, batch_size=batch_size))

    def predict_labels(self, texts: list[str], batch_size: int = 64) -> list:
        """The head's predicted label for each text."""
        return list(self.model.model_head.predict(self.embed(texts, batch_size)))


def train_setfit(texts: list[str], labels: list[object], seed: int, max_steps: int = -1, precision: str = "fp32",
                 body: str | None = None) -> SetFitRun:
    """Trains SetFit as its documentation shows: ``SetFitModel.from_pretrained``, ``TrainingArguments``,
    a ``datasets.Dataset`` with ``text`` and ``label``, ``Trainer.train()``.

    Only what does not change training is set besides ``seed`` and ``max_steps``: a scratch output folder,
    no checkpoints, no logging, no progress bar. The default precision is SetFit's own on a CPU, fp32;
    ``"bf16"`` or ``"auto"`` wrap training and prediction in bf16 autocast, which SetFit is not made for.

    Args:
        texts, labels: The labelled examples.
        seed: SetFit's ``seed`` (body initialisation order, pair shuffling, head).
        max_steps: Pair steps; ``-1`` keeps SetFit's default (:func:`setfit_default_steps`).
        precision: ``"fp32"`` (SetFit's own), ``"bf16"`` or ``"auto"``.
        body: Model name or folder; default all-MiniLM-L6-v2 (the offline package when installed).

    Raises:
        ValueError: ``texts`` and ``labels`` differ in length, fewer than two classes, ``max_steps`` is
            neither -1 nor positive, or an unknown ``precision``.
    """
    if len(texts) != len(labels) or len(set(labels)) < 2:
        raise ValueError(f"Need as many labels as texts ({len(texts)} texts, {len(labels)} labels) and 2+ classes.")
    if max_steps == 0 or max_steps < -1:
        raise ValueError(f"max_steps must be -1 (SetFit's default) or positive, got {max_steps}.")
    if precision not in PRECISION_SETTINGS:
        raise ValueError(f"precision must be one of {PRECISION_SETTINGS}, got {precision!r}.")
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    from mtt_helpers.encoder import default_model_source

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
