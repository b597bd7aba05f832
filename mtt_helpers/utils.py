"""Small utilities shared by the notebooks: seeding and quiet, reproducible output."""

from __future__ import annotations

import logging
import os
import random
import warnings

import numpy as np
import pandas as pd
import torch


class InputWarning(Warning):
    """Something about the user's input worth seeing even after :func:`quiet`: texts cut at the
    encoder's token limit, empty texts dropped from a dataset.

    A direct subclass of ``Warning``, not of ``UserWarning``, because ``quiet()`` silences
    ``UserWarning`` (the libraries' noise) and filters match subclasses. Shown every time
    (not once per code location, Python's default), so each call reports its own input.
    """


warnings.filterwarnings("always", category=InputWarning)


def set_seed(seed: int) -> None:
    """Seeds Python's ``random``, NumPy and PyTorch (CPU and every GPU).

    Args:
        seed: Any non-negative integer.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def quiet() -> None:
    """Silences warnings and progress bars that would make notebook outputs flaky.

    Library warnings (``FutureWarning``, ``UserWarning``, ``DeprecationWarning``) and
    library logging below ``ERROR`` are hidden; this project's own :class:`InputWarning`
    stays visible, since it reports something about the user's data.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("sentence_transformers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers shows a "Loading weights" bar on every model load.
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (for the results files the README
    includes), floats rounded to ``digits``. Written here to avoid a dependency on ``tabulate``.

    Args:
        frame: The table; its index becomes the first column.
        digits: Decimals shown for float cells.

    Returns:
        The table, one line per row, no trailing newline.
    """
    if frame.columns.empty:
        raise ValueError("The frame has no columns to write.")

    def cell(value: object) -> str:
        text = f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in zip(frame.index, frame.itertuples(index=False)):
        lines.append("| " + " | ".join([cell(index)] + [cell(v) for v in row]) + " |")
    return "\n".join(lines)
