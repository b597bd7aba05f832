"""Step 1 of the data build: plain HTTP downloads of the pinned raw files, checked against their sha256.

Everything missing is downloaded into a staging folder inside the raw folder and moved to its final
name only once every file has arrived whole and matched its checksum: a failed, interrupted or
mismatching download leaves no file of its own in the raw folder.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from tqdm.auto import tqdm

from mtt_helpers.data.fetch.sources import RAW_FILES, RawFile
from mtt_helpers.data.settings import DEFAULT_BASE_URL


class ChecksumError(RuntimeError):
    """A raw file does not have its recorded sha256."""


class DownloadError(OSError):
    """A raw file could not be downloaded whole (no connection, an HTTP error, a connection closed early)."""


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, raw: RawFile, source: str | None = None) -> str:
    """Checks ``path`` against ``raw.sha256``; returns the file's sha256.

    Args:
        path: The file to check.
        raw: The entry whose checksum it must have.
        source: Where the file came from, for the error (default: ``path``).

    Raises:
        ChecksumError: the checksum differs.
    """
    actual = sha256_of(path)
    if actual != raw.sha256:
        raise ChecksumError(f"{source or path}: sha256 {actual} does not match the recorded {raw.sha256}.")
    return actual


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


def download(
    raw_dir: str | Path,
    files: Iterable[RawFile] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 60.0,
    progress: bool = True,
) -> dict[str, str]:
    """Downloads the raw files into ``raw_dir`` (``owner__name/path``), verifying checksums.

    A file already present is verified (before anything is downloaded) and kept. The missing ones
    are downloaded with a progress bar into a staging folder and moved into place only when all of
    them are whole and verified; on any error the staging folder is removed, so nothing is kept.

    Args:
        raw_dir: Folder for the raw files.
        files: What to fetch; default every entry of :data:`RAW_FILES`.
        base_url: Base of the download URLs (``RawFile.url_at``).
        timeout: Seconds a request may wait for the server's next bytes.
        progress: Show a progress bar (tqdm) over the files.

    Returns:
        The sha256 of every file, by URL.

    Raises:
        ChecksumError: a present or downloaded file does not match its recorded sha256.
        DownloadError: a file could not be downloaded whole.
    """
    raw_dir = Path(raw_dir)
    files = list(RAW_FILES.values() if files is None else files)
    checksums, missing = {}, []
    for raw in files:
        target = raw_dir / raw.local_path
        if target.is_file():
            checksums[raw.url_at(base_url)] = verify(target, raw)
        else:
            missing.append(raw)
    if not missing:
        return checksums
    raw_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=raw_dir))
    try:
        with tqdm(total=len(missing), unit="file", desc="Downloading the public datasets", disable=not progress) as bar:
            for raw in missing:
                url = raw.url_at(base_url)
                bar.set_postfix_str(Path(raw.path).name)
                _fetch(url, staging / raw.local_path, timeout)
                checksums[url] = verify(staging / raw.local_path, raw, url)
                bar.update()
        for raw in missing:
            (raw_dir / raw.local_path).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / raw.local_path, raw_dir / raw.local_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checksums
