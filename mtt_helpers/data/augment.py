"""Text augmentation for a task with few labelled examples: make label-preserving variants.

Two methods that need nothing beyond the encoder we already have:

* :func:`random_edit`, in the style of EDA (Wei & Zou, 2019): delete a few random words and
  swap a few pairs. Cheap and blind: it can break grammar, and it never adds a new word.
* :class:`NeighbourWords`: replace a few content words with a word whose *input token
  embedding* in all-MiniLM-L6-v2 is close (cosine). No thesaurus needed, so it works offline,
  but a close neighbour is not always a synonym ("good" sits near "bad"): read the examples.

:func:`augment_frame` applies either to a labelled table. Every variant is seeded by
``(seed, text, copy)``, so the same sentence gets the same variants in every sample that
contains it (which lets an embedding cache serve nested samples).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

NEGATIONS = frozenset({"not", "no", "never", "nor", "nothing", "none", "nobody", "without", "n't", "cannot"})
"""Words that flip a sentence's sentiment: :func:`random_edit` never deletes them, and
:class:`NeighbourWords` never replaces them."""

_WORD = re.compile(r"^([^\w@#]*)([A-Za-z]+)(\W*)$")
"""A word with punctuation around it; not an @mention or #hashtag."""


def _check_text(text: str) -> list[str]:
    if not isinstance(text, str):
        raise TypeError(f"Expected a string, got {type(text).__name__}: {text!r}")
    words = text.split()
    if not words:
        raise ValueError("Cannot augment an empty or whitespace-only text.")
    return words


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
