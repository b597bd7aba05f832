"""Results tables for the files the README includes, and files of training runs a notebook reads back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


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


@dataclass
class RunsFile:
    """A CSV file of a notebook's training runs, for runs too slow to repeat on every execution.

    Executed in full, the notebook makes every run and :meth:`write` saves them, one row per run.
    Executed as usual, it makes only some runs again and :meth:`combine` reads the others from the
    file, after two checks: every filed run was made from the sample the notebook draws for it (a
    fingerprint per run), and every run made again scores what its filed copy scored.
    """

    path: Path
    """The CSV file (written with the notebook, beside its other results)."""
    key: list[str]
    """Columns that name one run, e.g. ``["method", "n", "seed"]``: at most one row per value."""
    scores: list[str]
    """Columns a run made again must reproduce (within ``tolerance``; missing on both sides counts as equal)."""
    command: str
    """The command that rewrites the file, named in every error."""
    tolerance: float = 0.03
    """Largest difference allowed between a run made again and its filed copy, on every ``scores`` column
    (bf16 arithmetic differs a little between processors, and even between runs on one processor; a run
    on a few dozen labels carries that into its score)."""
    fingerprint_column: str = "sample_hash"
    """The column naming the sample each run was made from (see ``mtt_helpers.data.sample_fingerprint``)."""
    mode: str = "read"
    """What :meth:`merge` does: ``"read"``, only some runs were made here and the file supplies the rest
    (:meth:`combine`); ``"write"``, every run was made here and becomes the file (:meth:`write`);
    ``"off"``, every run was made here and the file is left alone (data the file does not describe)."""

    def __post_init__(self) -> None:
        if self.mode not in ("read", "write", "off"):
            raise ValueError(f"mode must be 'read', 'write' or 'off', got {self.mode!r}.")

    def merge(self, live: pd.DataFrame, fingerprints: Mapping[tuple, str], sample_key: list[str]) -> pd.DataFrame:
        """The runs to use, by ``mode``: the file's runs with ``live`` in their place (``"read"``), or
        ``live`` alone, saved as the file first (``"write"``) or not (``"off"``)."""
        if self.mode == "read":
            return self.combine(live, fingerprints, sample_key)
        if self.mode == "write":
            self.write(live)
        return live

    def write(self, runs: pd.DataFrame) -> None:
        """Saves ``runs`` (every run, with ``key``, ``scores`` and the fingerprint column) as the file."""
        self._check_columns(runs, "the runs to write")
        repeated = runs.duplicated(self.key)
        if repeated.any():
            raise ValueError(f"Two runs share a key {self.key}: {runs[repeated][self.key].to_dict('records')}.")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        runs.to_csv(self.path, index=False)

    def combine(self, live: pd.DataFrame, fingerprints: Mapping[tuple, str], sample_key: list[str]) -> pd.DataFrame:
        """The file's runs, with the runs made again (``live``) in place of their filed copies.

        Args:
            live: The runs made in this execution; each must be in the file.
            fingerprints: The notebook's samples: ``tuple(row[sample_key])`` -> fingerprint.
            sample_key: The columns of ``key`` that name a run's sample, e.g. ``["n", "seed"]``.

        Returns:
            One row per filed run, in the file's order, with the file's columns.

        Raises:
            FileNotFoundError: no file.
            ValueError: a filed run was made from another sample, a run made here is not in the
                file, or it differs from its filed copy by more than ``tolerance``.
        """
        if not self.path.exists():
            raise FileNotFoundError(f"No {self.path}: make it with `{self.command}`.")
        filed = pd.read_csv(self.path, dtype={self.fingerprint_column: str})
        self._check_columns(filed, str(self.path))
        self._check_columns(live, "the runs made here")
        expected = [fingerprints.get(tuple(row)) for row in filed[sample_key].itertuples(index=False)]
        stale = filed.loc[[e != f for e, f in zip(expected, filed[self.fingerprint_column])], self.key]
        if len(stale):
            raise ValueError(f"{self.path} was made from other samples than this notebook draws, for runs "
                             f"{stale.to_dict('records')[:5]}: make it again with `{self.command}`.")
        live_index = pd.MultiIndex.from_frame(live[self.key])
        position = pd.MultiIndex.from_frame(filed[self.key]).get_indexer(live_index)  # -1: not in the file
        if (position < 0).any():
            missing = list(live_index[position < 0])
            raise ValueError(f"{self.path} holds no run {self.key} = {missing[:5]}: make it again with `{self.command}`.")
        for column in self.scores:
            here = pd.to_numeric(live[column]).to_numpy(dtype=float)
            there = pd.to_numeric(filed[column]).to_numpy(dtype=float)[position]
            differs = ~((np.isnan(here) & np.isnan(there)) | (np.abs(here - there) <= self.tolerance))
            if differs.any():
                first = int(np.argmax(differs))
                raise ValueError(f"The run {dict(zip(self.key, live_index[first]))} scored {column} = {here[first]:.4f} "
                                 f"here and {there[first]:.4f} in {self.path} (tolerance {self.tolerance}).")
        combined = filed.copy()
        columns = [c for c in filed.columns if c in live.columns]
        combined.loc[position, columns] = live[columns].to_numpy()
        return combined.astype(filed.dtypes.to_dict())

    def _check_columns(self, frame: pd.DataFrame, what: str) -> None:
        missing = [c for c in [*self.key, *self.scores, self.fingerprint_column] if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lack(s) column(s) {missing}.")
