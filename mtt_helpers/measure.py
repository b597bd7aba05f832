"""How the chapters measure and compare: paired verdicts over seeds, fair timings, peak memory, tables.

* :func:`compare` and :func:`claim`: one rule for "A scores higher than B". Every seed gives both
  methods the same sample, so the differences are read *paired*, seed by seed. A difference is called
  only when every seed agrees in sign **and** the mean difference exceeds two standard errors of the
  paired differences; otherwise it is "not resolved" at that many seeds, and the per-seed differences
  are shown. :func:`paired_gains` gives the same numbers as a table (and the error bars of the plots).
* :func:`fastest_times` and :func:`peak_memory_mb`: speed and memory, measured fairly on a noisy
  machine. A ratio of two timings is one measurement: print it, never assert it.
* :func:`markdown_table`: the tables the README includes.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

VERDICTS = ("higher", "lower", "not resolved")
"""What :func:`compare` can conclude about ``a`` against ``b``."""


@dataclass(frozen=True)
class PairedComparison:
    """Two methods' scores on the same seeds (the same samples), read pair by pair."""

    a: str
    b: str
    metric: str
    score_a: float
    """Mean of ``a`` over the seeds."""
    score_b: float
    """Mean of ``b`` over the seeds."""
    differences: tuple[float, ...]
    """``a - b`` on each seed."""

    @property
    def mean(self) -> float:
        return float(np.mean(self.differences))

    @property
    def standard_error(self) -> float:
        """The standard deviation of the paired differences over the square root of their number."""
        return float(np.std(self.differences, ddof=1) / math.sqrt(len(self.differences)))

    @property
    def verdict(self) -> str:
        """``"higher"`` or ``"lower"`` when every seed agrees in sign and ``|mean| > 2 SE``; else ``"not resolved"``."""
        signs = {np.sign(d) for d in self.differences}
        if len(signs) == 1 and 0 not in signs and abs(self.mean) > 2 * self.standard_error:
            return "higher" if self.mean > 0 else "lower"
        return "not resolved"

    def __str__(self) -> str:
        n = len(self.differences)
        scores = f"{self.score_a:.3f} vs {self.score_b:.3f}"
        if self.verdict == "not resolved":
            per_seed = ", ".join(f"{d:+.3f}" for d in self.differences)
            return f"{self.a} vs {self.b} on {self.metric}: {scores}, not resolved at {n} seeds (per seed: {per_seed})"
        return (f"{self.a} scores {self.verdict} than {self.b} on {self.metric}: {scores} (paired: {self.mean:+.3f}, "
                f"2 SE {2 * self.standard_error:.3f}, {n}/{n} seeds agree)")


def compare(runs: pd.DataFrame, a: str, b: str, metric: str, by: str = "method", pair: str = "seed") -> PairedComparison:
    """Compares the runs of ``a`` and ``b`` on ``metric``, seed by seed.

    Args:
        runs: One row per run, with columns ``by`` (which method), ``pair`` (which seed: the same value
            means the same sample) and ``metric``.
        a, b: The two values of ``by`` to compare.

    The comparison uses the seeds both methods were run on (a method run on five seeds is read against
    one run on three on those three).

    Raises:
        ValueError: a method has no runs, or the two share fewer than two seeds.
    """
    wide = runs.pivot_table(index=pair, columns=by, values=metric, aggfunc="first")
    for name in (a, b):
        if name not in wide.columns:
            raise ValueError(f"No runs of {name!r}; the runs hold {sorted(map(str, wide.columns))}.")
    both = wide[[a, b]].dropna()
    if len(both) < 2:
        raise ValueError(f"{a!r} and {b!r} must share at least two seeds; got\n{wide[[a, b]]}")
    return PairedComparison(a, b, metric, float(both[a].mean()), float(both[b].mean()),
                            tuple(float(d) for d in both[a] - both[b]))


def claim(runs: pd.DataFrame, a: str, b: str, metric: str, expected: str, by: str = "method",
          pair: str = "seed") -> PairedComparison:
    """Prints what the paired comparison of ``a`` and ``b`` shows, marked ✓; raises when it is not ``expected``.

    A notebook states each finding in its prose and checks it with one line, e.g.
    ``claim(runs, "4. whole encoder", "2. frozen heads", "sentiment macro_recall", "higher")``.

    Raises:
        AssertionError: the comparison says otherwise (the message says what it does show).
    """
    if expected not in VERDICTS:
        raise ValueError(f"expected must be one of {VERDICTS}, got {expected!r}.")
    comparison = compare(runs, a, b, metric, by, pair)
    if comparison.verdict != expected:
        raise AssertionError(f"✗ expected {a} {expected} than {b} on {metric}, but: {comparison}")
    print(f"✓ {comparison}")
    return comparison


def paired_gains(runs: pd.DataFrame, baseline: str, metric: str, by: str = "method", pair: str = "seed",
                 methods: Sequence[str] | None = None) -> pd.DataFrame:
    """Every method's paired difference to ``baseline``: one row per method with ``gain`` (the mean),
    ``2 SE`` (the error bar the plots draw), the smallest and largest per-seed gain, and ``verdict``."""
    names = methods or [name for name in dict.fromkeys(runs[by]) if name != baseline]
    rows = []
    for name in names:
        comparison = compare(runs, name, baseline, metric, by, pair)
        rows.append({by: name, "mean": comparison.score_a, "gain": comparison.mean, "2 SE": 2 * comparison.standard_error,
                     "smallest gain": min(comparison.differences), "largest gain": max(comparison.differences),
                     "verdict": comparison.verdict})
    return pd.DataFrame(rows).set_index(by)


def markdown_table(frame: pd.DataFrame, digits: int = 3, formats: Mapping[str, str] | None = None) -> str:
    """A DataFrame as a GitHub markdown table (pandas' ``to_markdown``, which uses ``tabulate``).

    Args:
        frame: The table; its index becomes the first column, headed by the index's name (a plain
            ``RangeIndex`` is left out).
        digits: Decimals shown for float cells of columns without an entry in ``formats``.
        formats: Column name -> ``str.format`` pattern for its non-missing cells, e.g. ``{"speed": "{:.2f}x"}``.

    Returns:
        The table, no trailing newline. Missing cells (NaN, None) show as ``–``.
    """
    formats = dict(formats or {})
    unknown = sorted(set(formats) - {str(c) for c in frame.columns})
    if unknown:
        raise ValueError(f"formats name column(s) {unknown} that the frame does not have: {list(frame.columns)}.")

    def cell(value: Any, pattern: str | None) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return "–"
        if pattern is not None:
            return pattern.format(value)
        return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)

    shown = pd.DataFrame({column: [cell(value, formats.get(str(column))) for value in frame[column]]
                          for column in frame.columns}, index=frame.index)
    if isinstance(frame.index, pd.RangeIndex):  # row numbers say nothing: leave them out
        return shown.to_markdown(index=False, tablefmt="github", disable_numparse=True)
    shown.index = shown.index.map(str)
    return shown.rename_axis(frame.index.name or "").reset_index().to_markdown(
        index=False, tablefmt="github", disable_numparse=True)


def fastest_times(functions: Mapping[str, Callable[[], Any] | tuple[Callable[[Any], Any], Sequence[Any]]],
                  repeats: int = 3, warmup: bool = True, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Times several ways of doing the same work, fairly on a noisy machine.

    Each entry is either a function timed as one call without arguments, or ``(function, calls)``:
    ``function(call)`` is timed for every item of ``calls`` (all entries then need the same number of
    calls). Every round runs the entries back to back on each call, rotating which goes first, so a
    burst of load from another process slows one try of one call rather than one entry. Each entry's
    **fastest** time per call over ``repeats`` rounds counts, summed over calls. Runs under
    ``torch.no_grad()`` and waits for the GPU before reading the clock.

    Args:
        functions: Name -> function, or name -> ``(function, calls)``.
        repeats: Rounds; the fastest of them counts.
        warmup: Run every entry's first call once, untimed, first.
        clock: Seconds as a float; tests pass a fake clock.

    Returns:
        Seconds per entry, in the order of ``functions``.
    """
    import torch

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

    def synchronize() -> None:  # GPU calls return before they finish: wait, so the clock measures them
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    with torch.no_grad():
        if warmup:
            for function, calls in entries.values():
                function(calls[0])
        for repeat in range(repeats):
            shift = repeat % len(names)
            for index in range(n_calls):
                for name in names[shift:] + names[:shift]:
                    function, calls = entries[name]
                    synchronize()
                    start = clock()
                    function(calls[index])
                    synchronize()
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
    """Peak resident memory, in MiB, of a fresh Python process (this interpreter, this folder) that runs
    ``code``: a fresh one, because a notebook's own peak includes everything it did before.

    Raises:
        RuntimeError: ``code`` failed; the message holds the end of its stderr.
    """
    result = subprocess.run([sys.executable, "-c", code + "\n" + _PEAK_REPORT], capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"The measured code failed (exit {result.returncode}):\n{result.stderr[-2000:]}")
    reports = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("MTT_PEAK_KIB ")]
    return int(reports[-1]) / 1024
