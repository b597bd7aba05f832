"""Writing outputs safely: whole files or nothing, with the permissions an ordinary write gets.

``tempfile.mkstemp``/``mkdtemp`` and safetensors create owner-only files (0600/0700) whatever the
umask; our outputs are ordinary files, so they get ``0666``/``0777`` masked by the umask
(``0644``/``0755`` under the usual umask 022), as ``open(path, "w")`` or ``mkdir`` would give.
"""

from __future__ import annotations

import os
import secrets
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path


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


def write_atomically(target: str | os.PathLike, write: Callable[[Path], None], is_dir: bool = False) -> None:
    """Writes into a hidden temporary path beside ``target``, then renames it into place.

    If ``write`` fails, ``target`` is untouched and the temporary path is removed. The result has
    ordinary permissions (see the module docstring).

    A file replaces an old one atomically (``os.replace``). A directory cannot be swapped in one
    step with the standard library, so an existing one is renamed away, the new one renamed in,
    and only then the old one deleted; if the second rename fails the old one is renamed back.
    What remains non-atomic: between the two renames (microseconds) ``target`` does not exist, and a
    crash in that instant leaves the old directory at ``.<name>.old-xxxxxxxx`` beside it.

    Args:
        target: The file or directory to create or replace. Callers decide whether replacing
            is allowed (the CLIs only replace a saved model).
        write: Writes the content to the path it is given (an existing empty file, or an
            existing empty directory when ``is_dir``).
        is_dir: ``target`` is a directory.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _sibling(target, "tmp")
    if is_dir:
        os.mkdir(temporary, 0o777)  # the umask applies, unlike with mkdtemp's 0o700
    else:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(temporary)
        apply_ordinary_permissions(temporary)
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
