"""Which data the notebooks read, and where it came from, like scikit-learn's ``fetch_*`` functions.

1. ``MTT_DATA_DIR=<folder>``: the public datasets in that folder.
2. ``MTT_DATA_DIR=bundled``: the bundled sentences; the network is never touched.
3. ``MTT_DATA_DIR`` unset: the download cache (``MTT_CACHE_DIR``, default ``~/.cache/mtt_helpers/data``).
   Empty, and the download server answers within a few seconds: the raw files are downloaded (a
   progress bar, checksums), built and written there once, and one line says where. No answer
   (offline): the bundled sentences, and one line says so.

The settings are described in :mod:`mtt_helpers.data.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtt_helpers.data.settings import BUNDLED, DATA_DIR_ENV, DataSettings

PUBLIC_SOURCES = "HuffPost, TweetEval, Financial PhraseBank"
"""The public sources the download builds datasets from, as the one-line messages name them."""


@dataclass(frozen=True)
class DataSource:
    """Where the notebooks' data is, and how it got there."""

    folder: Path | None
    """The folder of the public datasets; ``None``: the bundled sentences."""
    origin: str
    """Where the data came from, as a phrase for a one-line message, e.g. ``"from MTT_DATA_DIR=/data"``."""


def cache_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """The build's files under ``folder``: ``(present, missing)``."""
    from mtt_helpers.data.fetch.write import output_paths

    paths = output_paths(folder)
    return [path for path in paths if path.is_file()], [path for path in paths if not path.is_file()]


def _download_into_cache(settings: DataSettings) -> DataSource:
    """Fills the empty cache (online) or names the bundled fallback (offline); prints one line either way."""
    from mtt_helpers.data.fetch import ChecksumError, DownloadError, fetch_datasets, is_reachable

    cache = settings.cache_dir
    if not is_reachable(settings.base_url, settings.connect_timeout):
        reason = f"no connection to {settings.base_url} within {settings.connect_timeout:g} s"
        print(f"Offline ({reason}): using the bundled sentences instead of the public datasets "
              f"({DATA_DIR_ENV}={BUNDLED} skips this check).")
        return DataSource(None, f"because there was {reason} to download the public datasets")
    try:
        fetch_datasets(cache, base_url=settings.base_url, timeout=settings.download_timeout)
    except (DownloadError, ChecksumError) as error:
        raise type(error)(f"{error} Nothing was kept: run again to retry, or set {DATA_DIR_ENV}={BUNDLED} "
                          "for the bundled sentences.") from error
    print(f"Downloaded the public datasets ({PUBLIC_SOURCES}; checksums verified) into {cache}.")
    return DataSource(cache, f"downloaded just now into {cache}")


def locate_data(settings: DataSettings | None = None) -> DataSource:
    """Finds the notebooks' data, downloading it into the cache on first use (see the module docstring).

    Args:
        settings: Default: :meth:`DataSettings.from_env`.

    Raises:
        FileNotFoundError: ``MTT_DATA_DIR`` names something that is not a folder.
        FileExistsError: the cache holds some but not all of the datasets' files (they are not replaced).
        DownloadError, ChecksumError: the download started but failed (nothing is kept; run again).
    """
    settings = settings or DataSettings.from_env()
    if settings.bundled_only:
        return DataSource(None, f"as {DATA_DIR_ENV}={BUNDLED} asks")
    if settings.data_dir:
        folder = Path(settings.data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{DATA_DIR_ENV}={settings.data_dir!r} is not a folder "
                                    f"(a folder of public datasets, or {BUNDLED!r} for the bundled sentences).")
        return DataSource(folder, f"from {DATA_DIR_ENV}={folder}")
    present, missing = cache_files(settings.cache_dir)
    if not missing:
        return DataSource(settings.cache_dir, f"from the download cache {settings.cache_dir}")
    if present:
        raise FileExistsError(f"The download cache {settings.cache_dir} holds only some of the datasets' files "
                              f"(missing: {', '.join(map(str, missing))}); move it away to download them again.")
    return _download_into_cache(settings)
