"""Which rows make up each training step: task sampling, length grouping, and the padding it saves."""

from __future__ import annotations

import math

import numpy as np

from mtt_helpers.training.config import TrainConfig


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
    steps = config.epoch_steps(n_rows)
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
