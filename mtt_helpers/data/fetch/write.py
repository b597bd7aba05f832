"""Step 3 of the data build: write every dataset's ``train.csv`` and ``dev.csv``, all of them or none.

The files are written into a temporary folder beside the destination and moved into place only
once all of them are written, so a failure (a full disk, a bad frame) leaves the destination as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from mtt_helpers.data.fetch.sources import DATASETS, WRITTEN_SPLITS


def output_paths(dest: str | Path, names: Iterable[str] = DATASETS) -> list[Path]:
    """The files the build writes under ``dest``: ``<name>/<split>.csv`` for each dataset and written split."""
    return [Path(dest) / name / f"{split}.csv" for name in names for split in WRITTEN_SPLITS]


def refuse_existing(dest: str | Path, names: Iterable[str] = DATASETS) -> None:
    """Raises ``FileExistsError`` naming every file of the build that already exists under ``dest``."""
    existing = [path for path in output_paths(dest, names) if path.exists()]
    if existing:
        raise FileExistsError(f"{len(existing)} file(s) exist: {', '.join(map(str, existing))}; "
                              "pass --overwrite (overwrite=True) to replace them.")


def write_datasets(built: dict[str, dict[str, pd.DataFrame]], dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Writes ``dest/<name>/{train,dev}.csv`` (UTF-8, ``text,label``, minimal quoting), all of them or none.

    Test splits are refused; so are existing files unless ``overwrite``.

    Returns:
        The files written.
    """
    dest = Path(dest)
    for name, splits in built.items():
        extra = set(splits) - set(WRITTEN_SPLITS)
        if extra:
            raise ValueError(f"{name}: refusing to write split(s) {sorted(extra)}; only {WRITTEN_SPLITS} are written.")
    if not overwrite:
        refuse_existing(dest, built)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", suffix=".partial", dir=dest.parent))
    try:
        moves = []
        for name, splits in built.items():
            for split, frame in splits.items():
                staged = staging / name / f"{split}.csv"
                staged.parent.mkdir(exist_ok=True)
                frame[["text", "label"]].to_csv(staged, index=False, encoding="utf-8")
                moves.append((staged, dest / name / f"{split}.csv"))
        for staged, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [target for _, target in moves]
