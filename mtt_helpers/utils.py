"""Small utilities shared by the notebooks: seeding, quiet output, markdown tables, timing and peak memory."""

from __future__ import annotations

import logging
import os
import random
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

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
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # SetFit maps its data with `datasets`
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    for name in ("sentence_transformers", "transformers", "huggingface_hub", "setfit", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "datasets" in sys.modules:  # imported before quiet(): its bars read the variable above at import
        sys.modules["datasets"].disable_progress_bars()
    # transformers shows a "Loading weights" bar on every model load.
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def markdown_table(frame: pd.DataFrame, digits: int = 3, formats: Mapping[str, str] | None = None) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (for the results files the README
    includes). Written here to avoid a dependency on ``tabulate``.

    Args:
        frame: The table; its index becomes the first column.
        digits: Decimals shown for float cells of columns without an entry in ``formats``.
        formats: Column name -> ``str.format`` pattern for its non-missing cells, e.g.
            ``{"speed": "{:.2f}x"}``.

    Returns:
        The table, one line per row, no trailing newline. Missing cells (NaN, None) show as ``–``.
    """
    if frame.columns.empty:
        raise ValueError("The frame has no columns to write.")
    formats = dict(formats or {})
    unknown = sorted(set(formats) - {str(c) for c in frame.columns})
    if unknown:
        raise ValueError(f"formats name column(s) {unknown} that the frame does not have: {list(frame.columns)}.")

    def cell(value: object, column: str | None = None) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            text = "–"
        elif column in formats:
            text = formats[column].format(value)
        elif isinstance(value, (float, np.floating)):
            text = f"{value:.{digits}f}"
        else:
            text = str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = [str(frame.index.name or "")] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in zip(frame.index, frame.itertuples(index=False)):
        cells = [cell(value, str(column)) for column, value in zip(frame.columns, row)]
        lines.append("| " + " | ".join([cell(index)] + cells) + " |")
    return "\n".join(lines)


def _synchronize() -> None:
    """Waits for queued GPU work, so the clock measures it (GPU calls return before they finish)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def fastest_times(
    functions: Mapping[str, Callable[[], Any] | tuple[Callable[[Any], Any], Sequence[Any]]],
    repeats: int = 3,
    warmup: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, float]:
    """Times several ways of doing the same work, fairly on a noisy machine.

    Each entry is either a function timed as one call without arguments, or ``(function, calls)``:
    ``function(call)`` is timed for every item of ``calls`` (all entries then need the same number
    of calls). Every round runs the entries back to back on each call, rotating which goes first,
    so a burst of load from another process slows one try of one call rather than one entry. The
    result keeps each entry's **fastest** time per call over ``repeats`` rounds, summed over calls.
    Runs under ``torch.no_grad()`` and waits for the GPU before reading the clock.

    Args:
        functions: Name -> function, or name -> ``(function, calls)``.
        repeats: Rounds; the fastest of them counts.
        warmup: Run every entry's first call once, untimed, first (memory allocation and kernel
            choice make first calls slow).
        clock: Seconds as a float; tests pass a fake clock.

    Returns:
        Seconds per entry, in the order of ``functions``.
    """
    if not functions:
        raise ValueError("Pass at least one function to time.")
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    entries = {}
    for name, entry in functions.items():
        if callable(entry):
            entries[name] = (lambda _, function=entry: function(), [None])
        elif isinstance(entry, tuple) and len(entry) == 2 and callable(entry[0]):
            entries[name] = (entry[0], list(entry[1]))
        else:
            raise TypeError(f"{name!r}: expected a function or (function, calls), got {type(entry).__name__}.")
    n_calls = {len(calls) for _, calls in entries.values()}
    if len(n_calls) != 1 or 0 in n_calls:
        raise ValueError(f"Every entry needs the same, non-zero number of calls; got {sorted(n_calls)}.")
    names, n_calls = list(entries), n_calls.pop()
    best = {name: [float("inf")] * n_calls for name in names}
    with torch.no_grad():
        if warmup:
            for function, calls in entries.values():
                function(calls[0])
        for repeat in range(repeats):
            shift = repeat % len(names)
            for index in range(n_calls):
                for name in names[shift:] + names[:shift]:
                    function, calls = entries[name]
                    _synchronize()
                    start = clock()
                    function(calls[index])
                    _synchronize()
                    best[name][index] = min(best[name][index], clock() - start)
    return {name: sum(times) for name, times in best.items()}


_PEAK_REPORT = """
def _mtt_peak_kib():
    try:  # Linux: this process's own peak resident memory (VmHWM), in KiB
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("VmHWM:")).split()[1])
    except (OSError, StopIteration):  # no /proc: ru_maxrss is in bytes on macOS, KiB elsewhere
        import resource, sys
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak
print("MTT_PEAK_KIB", _mtt_peak_kib())
"""


def peak_memory_mb(code: str, timeout: float | None = None) -> float:
    """Peak resident memory of a fresh Python process that runs ``code``, in MB (MiB).

    A fresh process, because a notebook's own peak includes everything it did before. The
    process is this interpreter (``sys.executable``) in the current directory and environment.

    Args:
        code: Python source to run, e.g. imports, then loading and running a model.
        timeout: Seconds before the process is stopped (``subprocess.TimeoutExpired``).

    Returns:
        The process's peak (Linux ``VmHWM``; ``ru_maxrss`` elsewhere; not Windows) / 1024.

    Raises:
        RuntimeError: ``code`` failed; the message holds the end of its stderr.
    """
    result = subprocess.run([sys.executable, "-c", code + "\n" + _PEAK_REPORT],
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"The measured code failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    reports = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("MTT_PEAK_KIB ")]
    return int(reports[-1]) / 1024
