"""The public datasets, production side: where they are (``locate_data``), and how they are downloaded,
checked and rebuilt from their pinned sources (``fetch_datasets``; ``mtt fetch-data``).

* :mod:`mtt.data.sources`: every raw file pinned to a commit with its sha256, and the build's settings.
* :mod:`mtt.data.build`: the build, a pure function of the raw files.
* :mod:`mtt.data.fetch`: the download cache and settings, the download, the checks, the all-or-none write.
"""

from mtt.data.build import build_datasets
from mtt.data.fetch import (
    BUNDLED, DATA_DIR_ENV, ChecksumError, DataSettings, DataSource, DownloadError, fetch_datasets, locate_data,
)
from mtt.data.sources import DATASETS, RAW_FILES, BuildConfig

__all__ = [
    "BUNDLED", "DATASETS", "DATA_DIR_ENV", "RAW_FILES", "BuildConfig", "ChecksumError", "DataSettings", "DataSource",
    "DownloadError", "build_datasets", "fetch_datasets", "locate_data",
]
