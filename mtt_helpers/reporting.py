"""Results tables for the files the README includes."""

from __future__ import annotations

from collections.abc import Mapping

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
