"""The environment variables that choose the notebooks' data, read in one place.

* ``MTT_DATA_DIR``: a folder holding ``<dataset>/train.csv`` and ``dev.csv``, which the public datasets
  are read from; or ``bundled``: the bundled sentences, without touching the network. Unset: the
  download cache below.
* ``MTT_CACHE_DIR``: the download cache, where the public datasets are downloaded and built on first
  use when ``MTT_DATA_DIR`` is unset. Default ``$XDG_CACHE_HOME/mtt_helpers/data``, that is
  ``~/.cache/mtt_helpers/data``.
* ``MTT_DATA_BASE_URL``: base URL of the raw downloads (a mirror, or a local server in tests). Default
  ``https://raw.githubusercontent.com``; each file comes from ``<base>/<owner>/<repo>/<commit>/<path>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR_ENV = "MTT_DATA_DIR"
"""Environment variable naming the folder of the public datasets, or ``bundled`` (CI: ``../shared/data``)."""

CACHE_DIR_ENV = "MTT_CACHE_DIR"
"""Environment variable naming the download cache (default :func:`default_cache_dir`)."""

BASE_URL_ENV = "MTT_DATA_BASE_URL"
"""Environment variable giving the base URL of the raw downloads (default :data:`DEFAULT_BASE_URL`)."""

BUNDLED = "bundled"
"""The ``MTT_DATA_DIR`` value that asks for the bundled sentences (no network)."""

DEFAULT_BASE_URL = "https://raw.githubusercontent.com"
"""Where the raw files of the public sources are downloaded from."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mtt_helpers/data``, or ``~/.cache/mtt_helpers/data`` (XDG ignores a relative value)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "mtt_helpers" / "data"


@dataclass(frozen=True)
class DataSettings:
    """Where the notebooks' data comes from (:meth:`from_env` reads the environment variables)."""

    data_dir: str = ""
    """``MTT_DATA_DIR`` as given: a folder, ``"bundled"``, or ``""`` (unset: use the download cache)."""
    cache_dir: Path = field(default_factory=default_cache_dir)
    """The download cache, filled on first use when ``data_dir`` is unset (``MTT_CACHE_DIR``)."""
    base_url: str = DEFAULT_BASE_URL
    """Base URL of the raw downloads, without a trailing slash (``MTT_DATA_BASE_URL``)."""
    connect_timeout: float = 5.0
    """Seconds to wait for the download server before treating the machine as offline."""
    download_timeout: float = 60.0
    """Seconds a download may wait for the server's next bytes before it fails."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"{BASE_URL_ENV} must be an http:// or https:// URL, got {self.base_url!r}.")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())

    @property
    def bundled_only(self) -> bool:
        """``MTT_DATA_DIR=bundled``: the bundled sentences, without touching the network."""
        return self.data_dir.lower() == BUNDLED

    @classmethod
    def from_env(cls) -> DataSettings:
        """The settings from ``MTT_DATA_DIR``, ``MTT_CACHE_DIR`` and ``MTT_DATA_BASE_URL`` (unset or blank: the default)."""
        values = {"data_dir": os.environ.get(DATA_DIR_ENV, "").strip()}
        if os.environ.get(CACHE_DIR_ENV, "").strip():
            values["cache_dir"] = Path(os.environ[CACHE_DIR_ENV].strip())
        if os.environ.get(BASE_URL_ENV, "").strip():
            values["base_url"] = os.environ[BASE_URL_ENV].strip()
        return cls(**values)
