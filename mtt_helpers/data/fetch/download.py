"""Step 1 of the data build: plain HTTP downloads of the pinned raw files, checked against their sha256."""

from __future__ import annotations

import hashlib
import sys
import urllib.request
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from mtt_helpers.data.fetch.sources import RAW_FILES, RawFile


class ChecksumError(RuntimeError):
    """A downloaded file does not have its recorded sha256."""


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, raw: RawFile) -> str:
    """Checks ``path`` against ``raw.sha256``; returns the file's sha256.

    Raises:
        ChecksumError: a checksum is recorded and differs.
    """
    actual = sha256_of(path)
    if raw.sha256 is None:
        warnings.warn(f"{raw.url}: no sha256 recorded, not verified (its sha256 is {actual}).", stacklevel=2)
    elif actual != raw.sha256:
        raise ChecksumError(f"{raw.url}: sha256 {actual} does not match the recorded {raw.sha256}.")
    return actual


def download(
    raw_dir: str | Path,
    files: Iterable[RawFile] = RAW_FILES.values(),
    urlopen: Callable = urllib.request.urlopen,
    timeout: float = 120.0,
) -> dict[str, str]:
    """Downloads the raw files into ``raw_dir`` (``owner__name/path``), verifying checksums.

    A file already present is verified and kept. A download is written to ``<file>.part`` and
    renamed only once verified, so a failed or mismatching download leaves nothing behind.

    Args:
        raw_dir: Folder for the raw files.
        files: What to fetch.
        urlopen: ``urllib.request.urlopen`` or a stand-in (tests).
        timeout: Seconds per request.

    Returns:
        The sha256 of every file, by URL, to record in :data:`RAW_FILES`.
    """
    raw_dir = Path(raw_dir)
    checksums = {}
    for raw in files:
        target = raw_dir / raw.local_path
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            print(f"downloading {raw.url}", file=sys.stderr)
            try:
                with urlopen(raw.url, timeout=timeout) as response, open(partial, "wb") as handle:
                    while block := response.read(1 << 20):
                        handle.write(block)
                verify(partial, raw)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
        checksums[raw.url] = verify(target, raw)
    return checksums
