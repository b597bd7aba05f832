"""Reading the project's CSV files exactly as written: every field a string, every row as wide as the header.

* ``read_text_csv``: the table and each row's line number (for error messages).
* ``read_required_csv``: the same, refusing a file without rows or without the required columns.
* ``drop_empty_texts``: drops empty texts, counts them and warns with ``InputWarning``.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import pandas as pd

from mtt_core.predictions import InputWarning, is_text


def read_text_csv(path: str | os.PathLike) -> tuple[pd.DataFrame, list[int]]:
    """Reads a CSV exactly as written: every field a string, every row as wide as the header.

    ``pandas.read_csv`` guesses: a row with one field more than the header (a text with an
    unquoted comma) silently turns the first field into the index, so "Great game, we won" would
    become " we won". Here such a row is an error that names its line.

    Args:
        path: A UTF-8 CSV file (a byte-order mark is allowed) with a header row.

    Returns:
        ``(frame, lines)``: the table (blank lines skipped) and, per row, the physical line
        (1-based) its record starts on, counting the lines inside multi-line quoted fields.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: naming the file (and line): not UTF-8, empty, a duplicate column name, a row
            with more or fewer fields than the header, or malformed quoting.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Data file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text ({error}); save the file as UTF-8.") from error
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    rows: list[list[str]] = []
    lines: list[int] = []
    end_of_previous = 0
    previous_limit = csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))  # one long text is fine
    try:
        for record in reader:
            start, end_of_previous = end_of_previous + 1, reader.line_num
            if not record:
                continue  # a blank line, which pandas skips too
            if header is None:
                header = record
                duplicates = sorted({name for name in header if header.count(name) > 1})
                if duplicates:
                    raise ValueError(f"{path}, line {start}: duplicate column name(s) {duplicates}.")
            elif len(record) != len(header):
                raise ValueError(
                    f"{path}, line {start}: {len(record)} field(s), but the header has {len(header)} "
                    f"({','.join(header)}). Quote a text that contains a comma: \"Great game, we won\"."
                )
            else:
                rows.append(record)
                lines.append(start)
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV: {error}") from error
    finally:
        csv.field_size_limit(previous_limit)
    if header is None:
        raise ValueError(f"Data file is empty: {path}")
    return pd.DataFrame(rows, columns=header, dtype=str), lines


def read_required_csv(path: Path, required: list[str]) -> pd.DataFrame:
    """Reads a CSV (see :func:`read_text_csv`) and checks it has rows and the required columns."""
    frame, _ = read_text_csv(path)
    missing = [column for column in required if column not in frame.columns]
    if missing:
        raise ValueError(f"{path} is missing column(s) {missing}; it has {list(frame.columns)}.")
    if frame.empty:
        raise ValueError(f"Data file has a header but no rows: {path}")
    return frame


def drop_empty_texts(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Drops empty and whitespace-only texts, counts them in ``attrs`` and warns."""
    frame = frame.copy()
    frame["text"] = frame["text"].str.strip()
    empty = ~frame["text"].map(is_text)
    if empty.any():
        # InputWarning, not UserWarning: quiet() hides UserWarning, and this one is about the user's data.
        warnings.warn(f"{source}: dropped {int(empty.sum())} empty or whitespace-only text(s).", InputWarning, stacklevel=3)
    frame = frame.loc[~empty].reset_index(drop=True)
    frame.attrs["dropped_empty"] = int(empty.sum())
    return frame
