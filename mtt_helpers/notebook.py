"""Global state, set only at entry points (notebooks, scripts, the command line): seeds and quiet output.

Library code never calls these: ``mtt_helpers.train`` seeds generators of its own and leaves the
caller's alone.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import warnings

from mtt_core.predictions import InputWarning


def set_seed(seed: int) -> None:
    """Seeds Python's ``random``, NumPy and PyTorch (CPU and every GPU).

    Args:
        seed: Any non-negative integer.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def show_input_warnings() -> None:
    """Shows every :class:`~mtt_core.predictions.InputWarning`, not once per code location
    (Python's default), so that each call reports its own input."""
    warnings.filterwarnings("always", category=InputWarning)


def quiet() -> None:
    """Silences warnings and progress bars that would make notebook outputs flaky.

    Library warnings (``FutureWarning``, ``UserWarning``, ``DeprecationWarning``) and
    library logging below ``ERROR`` are hidden; this project's own
    :class:`~mtt_core.predictions.InputWarning` stays visible (every time: see
    :func:`show_input_warnings`), since it reports something about the user's data.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # SetFit maps its data with `datasets`
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    show_input_warnings()
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "setfit", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "datasets" in sys.modules:  # imported before quiet(): its bars read the variable above at import
        sys.modules["datasets"].disable_progress_bars()
    # transformers shows a "Loading weights" bar on every model load.
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
