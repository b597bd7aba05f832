"""Writing outputs safely: whole files or folders or nothing, with the permissions an ordinary write gets.

``tempfile.mkstemp``/``mkdtemp`` and safetensors create owner-only files (0600/0700) whatever the
umask; our outputs are ordinary files, so they get ``0666``/``0777`` masked by the umask
(``0644``/``0755`` under the usual umask 022), as ``open(path, "w")`` or ``mkdir`` would give.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from mtt_helpers.manifest import check_replaceable, read_manifest, unaccounted, write_manifest

WRITER_MARKER = ".mtt-writer"
"""File in a folder being written: the writing process (pid, host), so a leftover of a killed one is known as ours."""

EMPTY_LEFTOVER_SECONDS = 60
"""An empty leftover folder is removed only this long after it was made (a writer may just have made it)."""


def current_umask() -> int:
    """The process umask. Reading it means setting it for an instant: a file another thread
    creates in that instant gets mode 0666/0777. Nothing here runs threads."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_ordinary_permissions(path: str | os.PathLike) -> None:
    """Gives ``path`` (and, for a directory, everything below it) ordinary permissions:
    ``0666 & ~umask`` for files, ``0777 & ~umask`` for directories."""
    mask = current_umask()
    path = Path(path)
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if item.is_symlink():
            continue
        os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def _sibling(target: Path, tag: str) -> Path:
    """A hidden, unused name beside ``target`` (``.name.tag-xxxxxxxx``)."""
    while True:
        candidate = target.with_name(f".{target.name}.{tag}-{secrets.token_hex(4)}")
        if not candidate.exists():
            return candidate


def write_atomically(target: str | os.PathLike, write: Callable[[Path], None], is_dir: bool = False,
                     kind: str | None = None, sources: Iterable[str | os.PathLike] = ()) -> None:
    """Writes into a hidden temporary path beside ``target``, then renames it into place.

    If ``write`` fails, ``target`` is untouched and the temporary path is removed. The result has
    ordinary permissions (see the module docstring).

    A file replaces an old one atomically (``os.replace``). A folder gets a ``manifest.json`` of
    ``kind`` listing what ``write`` put there, and may replace an existing folder only under
    :func:`mtt_helpers.manifest.check_replaceable` (checked before writing and again just before
    the swap). A directory cannot be swapped in one step with the standard library, so an existing
    one is renamed away, the new one renamed in, and only then the old one deleted; if the second
    rename fails the old one is renamed back. Between the two renames (microseconds) ``target``
    does not exist; a crash then leaves the old folder at ``.<name>.old-xxxxxxxx``. A process killed
    while writing leaves ``.<name>.tmp-xxxxxxxx``. After each successful folder write, such
    leftovers of ``target`` are removed when they are ours (:func:`remove_leftovers`).

    Args:
        target: The file or folder to create or replace.
        write: Writes the content to the path it is given (an existing empty file, or an
            existing empty folder when ``is_dir``).
        is_dir: ``target`` is a folder.
        kind: The folder's manifest kind (``mtt_helpers.manifest.MODEL_KIND`` or ``ONNX_KIND``);
            required with ``is_dir``.
        sources: Folders ``write`` reads from; ``target`` may neither contain nor lie in one.
    """
    target = Path(target).expanduser()
    if is_dir:
        if kind is None:
            raise ValueError("write_atomically(..., is_dir=True) needs the folder's manifest kind.")
        check_replaceable(target, kind, sources)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _sibling(target, "tmp")
    if is_dir:
        os.mkdir(temporary, 0o777)  # the umask applies, unlike with mkdtemp's 0o700
    else:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        if is_dir:
            (temporary / WRITER_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        write(temporary)
        if is_dir:
            write_manifest(temporary, kind, skip=[WRITER_MARKER])
            (temporary / WRITER_MARKER).unlink()
        apply_ordinary_permissions(temporary)
        if is_dir:
            check_replaceable(target, kind, sources)  # the folder may have changed while we wrote
        if is_dir and target.exists():
            _swap_in_directory(temporary, target)
        else:
            os.replace(temporary, target)
    except BaseException:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        else:
            temporary.unlink(missing_ok=True)
        raise
    if is_dir:
        remove_leftovers(target)


def _swap_in_directory(new: Path, target: Path) -> None:
    """Replaces the directory ``target`` by ``new``: rename old away, rename new in, delete old."""
    old = _sibling(target, "old")
    os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)  # roll back: the old directory is where it was
        raise
    shutil.rmtree(old, ignore_errors=True)
    if old.exists():
        warnings.warn(f"Replaced {str(target)!r}, but could not delete its old copy {str(old)!r}.", stacklevel=3)


def remove_leftovers(target: Path) -> list[Path]:
    """Removes the leftovers of interrupted writes of ``target`` that are ours; returns them.

    A leftover is a folder beside ``target`` named exactly ``.<name>.tmp-xxxxxxxx`` or
    ``.<name>.old-xxxxxxxx`` (8 hex digits) that :func:`write_atomically` made: it holds our writer
    marker naming a process of this machine that no longer runs, or it holds our manifest and
    nothing it does not list, or it has been empty for a minute. Anything else is left alone.
    """
    pattern = re.compile(re.escape(f".{target.name}.") + r"(tmp|old)-[0-9a-f]{8}")
    removed = []
    for item in target.parent.iterdir():
        if pattern.fullmatch(item.name) and not item.is_symlink() and item.is_dir() and _is_ours_and_stale(item):
            shutil.rmtree(item, ignore_errors=True)
            removed.append(item)
    return removed


def _is_ours_and_stale(folder: Path) -> bool:
    marker = folder / WRITER_MARKER
    if marker.is_file() and not marker.is_symlink():
        try:
            writer = json.loads(marker.read_text(encoding="utf-8"))
            return writer["host"] == socket.gethostname() and not _process_runs(int(writer["pid"]))
        except (OSError, ValueError, KeyError, TypeError):
            return False
    if not any(folder.iterdir()):
        return time.time() - folder.stat().st_mtime > EMPTY_LEFTOVER_SECONDS
    return read_manifest(folder) is not None and not unaccounted(folder)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True
