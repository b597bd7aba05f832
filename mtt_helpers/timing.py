"""Measuring the notebooks' comparisons: fastest times of competing code, and peak memory of a fresh process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def _synchronize(torch) -> None:
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
    import torch

    with torch.no_grad():
        if warmup:
            for function, calls in entries.values():
                function(calls[0])
        for repeat in range(repeats):
            shift = repeat % len(names)
            for index in range(n_calls):
                for name in names[shift:] + names[:shift]:
                    function, calls = entries[name]
                    _synchronize(torch)
                    start = clock()
                    function(calls[index])
                    _synchronize(torch)
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
