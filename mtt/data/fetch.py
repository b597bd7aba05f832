"""Getting the public datasets: where they are, downloading and checking their raw files, writing the build.

* :func:`locate_data`: the folder the notebooks read, like scikit-learn's ``fetch_*``: ``MTT_DATA_DIR``'s
  folder; ``MTT_DATA_DIR=bundled``: none (the bundled sentences, no network); unset: the download
  cache (``MTT_CACHE_DIR``, default ``~/.cache/mtt_helpers/data``), filled on first use when the
  download server answers, else none (offline), with one line saying so.
* :func:`fetch_datasets`: the whole build: check the folders, download the raw files (unless told not
  to), check **every** raw file against its recorded sha256, build (``mtt.data.build``), write all
  six ``train.csv``/``dev.csv`` files or none.

**Honesty note.** The download step has never reached GitHub: this project's machines cannot reach
the internet. It is tested end to end against a local HTTP server serving small fixture files in each
source's raw format (``tests/fixtures/fetch_data``). The folder CI reads is what the build step writes
from the real raw files of the pinned commits; the recorded digests are those files' git blobs, which
is what a raw download returns.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import secrets
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from mtt.data.build import build_datasets
from mtt.data.sources import DATASETS, DEFAULT_BASE_URL, RAW_FILES, WRITTEN_SPLITS, BuildConfig, RawFile
from mtt_core.files import WriteError, remove_leftovers, sha256_of, staging_folder

DATA_DIR_ENV = "MTT_DATA_DIR"
"""Environment variable naming the folder of the public datasets, or ``bundled`` (CI: ``../shared/data``)."""

CACHE_DIR_ENV = "MTT_CACHE_DIR"
"""Environment variable naming the download cache (default :func:`default_cache_dir`)."""

BASE_URL_ENV = "MTT_DATA_BASE_URL"
"""Environment variable giving the base URL of the raw downloads (default ``https://raw.githubusercontent.com``)."""

BUNDLED = "bundled"
"""The ``MTT_DATA_DIR`` value that asks for the bundled sentences (no network)."""

PUBLIC_SOURCES = "HuffPost, TweetEval, Financial PhraseBank"
"""The public sources the build reads, as the one-line messages name them."""


class ChecksumError(RuntimeError):
    """A raw file does not have its recorded sha256."""


class DownloadError(OSError):
    """A raw file could not be downloaded whole (no connection, an HTTP error, a connection closed early)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mtt_helpers/data``, or ``~/.cache/mtt_helpers/data`` (XDG ignores a relative value)."""
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "mtt_helpers" / "data"


@dataclass(frozen=True)
class DataSettings:
    """Where the notebooks' data comes from (:meth:`from_env` reads the environment variables)."""

    data_dir: str = ""
    """``MTT_DATA_DIR`` as given: a folder, ``"bundled"``, or ``""`` (unset: the download cache)."""
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


@dataclass(frozen=True)
class DataSource:
    """Where the notebooks' data is, and how it got there."""

    folder: Path | None
    """The folder of the public datasets; ``None``: the bundled sentences."""
    origin: str
    """Where the data came from, as one line for the reader."""


# ----------------------------------------------------------------------------- download and checks
def verify(path: Path, raw: RawFile, source: str | None = None) -> str:
    """Checks ``path`` against ``raw.sha256``; returns the file's sha256.

    Raises:
        ChecksumError: the digest differs (the message names the file and both digests).
    """
    actual = sha256_of(path)
    if actual != raw.sha256:
        raise ChecksumError(f"{source or path}: sha256 {actual} does not match the recorded {raw.sha256}.")
    return actual


def verify_raw(raw_dir: str | Path, files: Iterable[RawFile] | None = None) -> None:
    """Checks every raw file the build reads against its recorded sha256, before anything is built.

    Raises:
        FileNotFoundError: a raw file is missing (named, with the URL it comes from).
        ChecksumError: a raw file differs from the recorded one.
    """
    for raw in RAW_FILES.values() if files is None else files:
        path = Path(raw_dir) / raw.local_path
        if not path.is_file():
            raise FileNotFoundError(f"Raw file missing: {path} (from {raw.url}); download it, or leave out --no-download.")
        verify(path, raw)


def is_reachable(base_url: str, timeout: float) -> bool:
    """Whether the download server answers a ``HEAD`` request within ``timeout`` seconds (any HTTP status counts)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(base_url + "/", method="HEAD"), timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, http.client.HTTPException):
        return False


def _fetch(url: str, path: Path, timeout: float) -> None:
    """Downloads ``url`` to ``path``, checking that every byte the server announced arrived."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(path, "wb") as handle:
            announced, received = response.headers.get("Content-Length"), 0
            while block := response.read(1 << 20):
                handle.write(block)
                received += len(block)
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(f"{url}: download failed ({error or type(error).__name__}).") from error
    if announced is not None and received != int(announced):
        raise DownloadError(f"{url}: the connection closed after {received} of {announced} bytes.")


def download(raw_dir: str | Path, files: Iterable[RawFile] | None = None, base_url: str = DEFAULT_BASE_URL,
             timeout: float = 60.0, progress: bool = True) -> None:
    """Downloads the raw files missing from ``raw_dir`` (``owner__name/path``), each checked against its sha256.

    The files already there are checked first, before anything is downloaded. The missing files are
    downloaded with a progress bar into a hidden staging folder in ``raw_dir`` and moved into place only
    when all of them are whole and verified; on any error the staging folder is removed, so nothing is
    kept (and the next download removes the folder of one that was killed).

    Raises:
        ChecksumError: a file already there, or a downloaded one, does not match its recorded sha256.
        DownloadError: a file could not be downloaded whole.
    """
    raw_dir = Path(raw_dir)
    wanted = list(RAW_FILES.values() if files is None else files)
    verify_raw(raw_dir, [raw for raw in wanted if (raw_dir / raw.local_path).is_file()])
    missing = [raw for raw in wanted if not (raw_dir / raw.local_path).is_file()]
    if not missing:
        return
    raw_dir.mkdir(parents=True, exist_ok=True)
    staging = staging_folder(raw_dir / "download")
    try:
        with tqdm(total=len(missing), unit="file", desc="Downloading the public datasets", disable=not progress) as bar:
            for raw in missing:
                url = raw.url_at(base_url)
                bar.set_postfix_str(Path(raw.path).name)
                _fetch(url, staging / raw.local_path, timeout)
                verify(staging / raw.local_path, raw, url)
                bar.update()
        for raw in missing:
            (raw_dir / raw.local_path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / raw.local_path, raw_dir / raw.local_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    remove_leftovers(raw_dir)


# ----------------------------------------------------------------------------- writing the build
def output_paths(dest: str | Path, names: Iterable[str] = DATASETS) -> list[Path]:
    """The files the build writes under ``dest``: ``<name>/<split>.csv`` for each dataset and written split."""
    return [Path(dest) / name / f"{split}.csv" for name in names for split in WRITTEN_SPLITS]


def refuse_existing(dest: str | Path, names: Iterable[str] = DATASETS) -> None:
    """Raises ``FileExistsError`` naming every file of the build that already exists under ``dest``."""
    existing = [path for path in output_paths(dest, names) if path.exists() or path.is_symlink()]
    if existing:
        raise FileExistsError(f"{len(existing)} file(s) exist: {', '.join(map(str, existing))}; "
                              "pass --overwrite (overwrite=True) to replace them.")


def refuse_unreplaceable(dest: str | Path, names: Iterable[str] = DATASETS) -> None:
    """Raises ``FileExistsError`` naming every output path that holds something other than a file
    (a folder, a link): ``--overwrite`` replaces files only."""
    blocked = [path for path in output_paths(dest, names) if path.is_symlink() or (path.exists() and not path.is_file())]
    if blocked:
        raise FileExistsError(f"{', '.join(map(str, blocked))}: not a file; --overwrite replaces only the build's own "
                              "train.csv and dev.csv files, so nothing was written.")


def write_datasets(built: dict[str, dict[str, pd.DataFrame]], dest: str | Path, overwrite: bool = False) -> list[Path]:
    """Writes ``dest/<name>/{train,dev}.csv`` (UTF-8, ``text,label``, minimal quoting): all of them or none.

    Every file is first written into a hidden folder beside ``dest``. Then each old file is moved aside
    and the new one moved in; if any move fails, the new files are removed, every old file is put back
    and the folders the moves made are removed, so ``dest`` holds either the old six files or the new
    six. A killed writer's hidden folder is removed by the next write beside ``dest``.

    Raises:
        ValueError: a split other than train and dev.
        FileExistsError: a file exists (without ``overwrite``), or an output path is not a file.
        mtt_core.files.WriteError: the file system refused (a full disk, a permission); nothing changed.
    """
    dest = Path(dest)
    for name, splits in built.items():
        extra = set(splits) - set(WRITTEN_SPLITS)
        if extra:
            raise ValueError(f"{name}: refusing to write split(s) {sorted(extra)}; only {WRITTEN_SPLITS} are written.")
    (refuse_unreplaceable if overwrite else refuse_existing)(dest, built)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = staging_folder(dest)
    except OSError as error:
        raise WriteError(f"cannot write {dest}: {error.strerror or error}") from error
    made = [folder for folder in [dest, *(dest / name for name in built)] if not folder.exists()]
    moves, placed, kept = [], [], []
    try:
        for name, splits in built.items():
            for split, frame in splits.items():
                staged = staging / name / f"{split}.csv"
                staged.parent.mkdir(exist_ok=True)
                frame[["text", "label"]].to_csv(staged, index=False, encoding="utf-8")
                moves.append((staged, dest / name / f"{split}.csv"))
        for staged, target in moves:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                aside = target.with_name(f".{target.name}.old-{secrets.token_hex(4)}")
                os.replace(target, aside)
                kept.append((target, aside))
            os.replace(staged, target)
            placed.append(target)
    except BaseException as error:
        for target in placed:
            target.unlink(missing_ok=True)
        for target, aside in kept:
            os.replace(aside, target)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only when empty: nothing but what this write made
        if isinstance(error, OSError):
            raise WriteError(f"cannot write {dest}: {error.strerror or error}; the old files are unchanged") from error
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for _, aside in kept:
        aside.unlink(missing_ok=True)
    remove_leftovers(dest.parent)
    return [target for _, target in moves]


def check_apart(raw_dir: str | Path, dest: str | Path) -> None:
    """Refuses a raw folder inside the data folder and a data folder inside the raw folder (links resolved):
    the raw files hold the test splits, which stay out of the data folder.

    Raises:
        ValueError: naming both folders.
    """
    raw, data = Path(raw_dir).expanduser().resolve(), Path(dest).expanduser().resolve()
    if raw == data or data in raw.parents:
        raise ValueError(f"the raw folder {raw} (--raw-dir) is inside the data folder {data} (--dest): the raw "
                         "files hold test splits, which stay out of the data folder.")
    if raw in data.parents:
        raise ValueError(f"the data folder {data} (--dest) is inside the raw folder {raw} (--raw-dir); keep them apart.")


def fetch_datasets(dest: str | Path, raw_dir: str | Path | None = None, download_raw: bool = True,
                   overwrite: bool = False, base_url: str = DEFAULT_BASE_URL, timeout: float = 60.0,
                   progress: bool = True, config: BuildConfig | None = None) -> dict[str, dict[str, pd.DataFrame]]:
    """Downloads the raw files (unless ``download_raw`` is false), checks every one of them against its
    recorded sha256, builds every dataset, and writes all six files or none.

    Everything that can be refused is refused before the download: existing output files (unless
    ``overwrite``), outputs that are not files, and nested folders (:func:`check_apart`).

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
        What was written: ``{name: {"train": frame, "dev": frame}}``.
    """
    dest = Path(dest).expanduser()
    if raw_dir is None and not download_raw:
        raise ValueError("building without downloading needs the folder of raw files (--raw-dir)")
    if raw_dir is not None:
        check_apart(raw_dir, dest)
    (refuse_unreplaceable if overwrite else refuse_existing)(dest)
    with contextlib.ExitStack() as stack:
        raw = Path(raw_dir).expanduser() if raw_dir is not None else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="mtt_raw_")))
        if download_raw:
            download(raw, base_url=base_url, timeout=timeout, progress=progress)
        verify_raw(raw)  # every file read, downloaded now or found in the folder
        built = build_datasets(raw, config)
    write_datasets(built, dest, overwrite=overwrite)
    return built


# ----------------------------------------------------------------------------- where the notebooks' data is
def locate_data(settings: DataSettings | None = None) -> DataSource:
    """Finds the notebooks' data, downloading it into the cache on first use (see the module docstring).

    Raises:
        FileNotFoundError: ``MTT_DATA_DIR`` names something that is not a folder.
        FileExistsError: the cache holds some but not all of the datasets' files (they are not replaced).
        DownloadError, ChecksumError: the download started but failed (nothing is kept; run again).
    """
    settings = settings or DataSettings.from_env()
    if settings.bundled_only:
        return DataSource(None, f"The bundled sentences, as {DATA_DIR_ENV}={BUNDLED} asks.")
    if settings.data_dir:
        folder = Path(settings.data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{DATA_DIR_ENV}={settings.data_dir!r} is not a folder "
                                    f"(a folder of public datasets, or {BUNDLED!r} for the bundled sentences).")
        return DataSource(folder, f"The public datasets, from {DATA_DIR_ENV}={folder}.")
    paths = output_paths(settings.cache_dir)
    present = [path for path in paths if path.is_file()]
    if len(present) == len(paths):
        return DataSource(settings.cache_dir, f"The public datasets, from the download cache {settings.cache_dir}.")
    if present:
        missing = [str(path) for path in paths if not path.is_file()]
        raise FileExistsError(f"The download cache {settings.cache_dir} holds only some of the datasets' files "
                              f"(missing: {', '.join(missing)}); move it away to download them again.")
    if not is_reachable(settings.base_url, settings.connect_timeout):
        reason = f"no connection to {settings.base_url} within {settings.connect_timeout:g} s"
        return DataSource(None, f"The bundled sentences instead of the public datasets: offline ({reason}; "
                                f"{DATA_DIR_ENV}={BUNDLED} skips this check).")
    try:
        fetch_datasets(settings.cache_dir, base_url=settings.base_url, timeout=settings.download_timeout)
    except (DownloadError, ChecksumError) as error:
        raise type(error)(f"{error} Nothing was kept: run again to retry, or set {DATA_DIR_ENV}={BUNDLED} "
                          "for the bundled sentences.") from error
    return DataSource(settings.cache_dir, f"The public datasets ({PUBLIC_SOURCES}), downloaded just now (checksums "
                                          f"verified) into {settings.cache_dir}.")
