"""The whole data build in one call: check the folders, download the raw files, build, write.

Used by ``mtt fetch-data`` and by the notebooks' first use of the download cache
(:func:`mtt_helpers.data.locate.locate_data`).
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import pandas as pd

from mtt_helpers.data.fetch.build import build_datasets
from mtt_helpers.data.fetch.download import download
from mtt_helpers.data.fetch.sources import BuildConfig
from mtt_helpers.data.fetch.write import refuse_existing, write_datasets
from mtt_helpers.data.settings import DEFAULT_BASE_URL


def check_apart(raw_dir: str | Path, dest: str | Path) -> None:
    """Refuses a raw folder inside the data folder and a data folder inside the raw folder (symlinks resolved).

    The raw files hold the test splits, which stay out of the data folder; the data folder is not
    kept among raw downloads either.

    Raises:
        ValueError: naming both folders.
    """
    raw, data = Path(raw_dir).expanduser().resolve(), Path(dest).expanduser().resolve()
    if raw == data or data in raw.parents:
        raise ValueError(f"the raw folder {raw} (--raw-dir) is inside the data folder {data} (--dest): the raw "
                         "files hold test splits, which stay out of the data folder.")
    if raw in data.parents:
        raise ValueError(f"the data folder {data} (--dest) is inside the raw folder {raw} (--raw-dir); keep them apart.")


def fetch_datasets(
    dest: str | Path,
    raw_dir: str | Path | None = None,
    download_raw: bool = True,
    overwrite: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 60.0,
    progress: bool = True,
    config: BuildConfig | None = None,
) -> dict[str, dict[str, pd.DataFrame]]:
    """Downloads the raw files (unless ``download_raw`` is false), builds every dataset, writes all six files.

    Everything that can be refused is refused before the download: existing output files (unless
    ``overwrite``) and nested folders (:func:`check_apart`).

    Args:
        dest: Folder to write ``<dataset>/{train,dev}.csv`` into.
        raw_dir: Folder of the raw files; default a temporary folder, deleted afterwards.
        download_raw: ``False``: build from the files already in ``raw_dir`` (required then).
        overwrite: Replace existing output files.
        base_url: Base of the download URLs.
        timeout: Seconds a download may wait for the server's next bytes.
        progress: Show the download's progress bar.
        config: Sizes and seed of the build; default the data card's.

    Returns:
        What was written: ``{name: {"train": frame, "dev": frame}}`` (see :func:`build_datasets`).
    """
    dest = Path(dest).expanduser()
    if raw_dir is None and not download_raw:
        raise ValueError("building without downloading needs the folder of raw files (--raw-dir)")
    if raw_dir is not None:
        check_apart(raw_dir, dest)
    if not overwrite:
        refuse_existing(dest)
    with contextlib.ExitStack() as stack:
        raw = Path(raw_dir).expanduser() if raw_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="mtt_raw_")))
        if download_raw:
            download(raw, base_url=base_url, timeout=timeout, progress=progress)
        built = build_datasets(raw, config)
    write_datasets(built, dest, overwrite=overwrite)
    return built
