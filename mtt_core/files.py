"""Writing outputs so that nothing a user wrote is lost, and reading back only what was written.

Every folder this project writes (a saved model, an ONNX export) is written whole into a hidden
folder beside its place and renamed in, and ends with ``manifest.json``::

    {"written_by": "mtt_helpers", "kind": "model", "files": {"config.json": "<sha256>", ...}}

* :func:`write_atomically`: a file or folder, whole or not at all. A folder may replace only an
  earlier output of the same kind holding nothing its manifest does not list, and that rule is
  applied to the very folder the final rename moves away, so one that appeared meanwhile is never lost.
* :func:`verify_files`: a reader's check that each file it is about to read has the digest it was
  written with (a flipped bit, a file copied in from another model).
* :func:`remove_leftovers`: hidden folders of killed writes in a parent folder, removed by the next write there
  (:func:`staging_folder` makes such a folder for writers that move files in one by one).
* :class:`WriteError`: a full disk or a permission, as one line naming the path and the cause, also when a
  library written in Rust reports it as its own exception type (:func:`file_system_error`).

Files get ordinary permissions (``0666 & ~umask``, folders ``0777 & ~umask``), as ``open`` and
``mkdir`` would give; ``tempfile`` and safetensors would make them owner-only.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_FILE = "manifest.json"
"""The manifest's name inside every folder written here."""

WRITER = "mtt_helpers"
"""The manifest's ``written_by``: a ``manifest.json`` without it is not ours."""

MODEL_KIND = "model"
"""``kind`` of a saved torch model."""

ONNX_KIND = "onnx"
"""``kind`` of an ONNX export."""

KIND_NAMES = {MODEL_KIND: "a saved model", ONNX_KIND: "an ONNX export"}
"""How messages name each kind."""

WRITER_MARKER = ".mtt-writer"
"""File in a folder being written: the writing process (pid, host), so a leftover of a killed writer is known as ours."""

EMPTY_LEFTOVER_SECONDS = 60
"""A leftover without a writer marker is removed only this long after its last change (a live writer may be about to rename it)."""

SHOWN = 5
"""How many unaccounted-for names an error lists before ``(and N more)``."""

_LEFTOVER = re.compile(r"\..+\.(tmp|old)-[0-9a-f]{8}")
"""The name of a hidden folder :func:`write_atomically` writes into (``tmp``) or moves an old copy to (``old``)."""


class WriteError(OSError):
    """A write failed for a reason of the file system (a full disk, no permission): one line naming the path and the cause."""


def sha256_of(path: str | os.PathLike) -> str:
    """The hex sha256 of a file, read in blocks of 1 MiB."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_files(directory: Path, skip: Iterable[str] = ()) -> list[str]:
    """Every file and symbolic link below ``directory`` (links not followed), as sorted relative POSIX paths."""
    skip = set(skip)
    found = []
    for root, dirs, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        found += [(base / name).as_posix() for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]]
    return sorted(name for name in found if name not in skip)


def write_manifest(directory: Path, kind: str, skip: Iterable[str] = ()) -> dict[str, str]:
    """Writes ``directory/manifest.json`` listing every file in ``directory`` (but ``skip``) with its sha256."""
    files = {name: sha256_of(directory / name) for name in folder_files(directory, skip={MANIFEST_FILE, *skip})}
    record = {"written_by": WRITER, "kind": kind, "files": files}
    (Path(directory) / MANIFEST_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return files


def read_manifest(directory: Path) -> dict[str, Any] | None:
    """The manifest of ``directory``, or ``None`` when it has none that this package wrote."""
    path = Path(directory) / MANIFEST_FILE
    if path.is_symlink() or not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = record.get("files") if isinstance(record, dict) else None
    if record.get("written_by") != WRITER or not isinstance(files, dict) or not all(
            isinstance(name, str) and isinstance(digest, str) for name, digest in files.items()):
        return None
    return record


def verify_files(directory: str | os.PathLike, names: Iterable[str] | None = None) -> None:
    """Checks that each of ``names`` (paths relative to ``directory``; default every file the manifest
    lists) is the file its writer wrote.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError: ``directory`` has no manifest of ours, a name is not in it, or a file's sha256
            differs from the recorded one (the message names the file and both digests).
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest is None:
        raise ValueError(f"{str(directory)!r} has no {MANIFEST_FILE} of {WRITER}, so its files cannot be checked; "
                         "write it with save(), export_onnx() or the mtt command.")
    for name in manifest["files"] if names is None else names:
        expected = manifest["files"].get(name)
        if expected is None:
            raise ValueError(f"{str(directory / name)!r} is not listed in {MANIFEST_FILE}: it was not written with "
                             "this folder; write the folder again.")
        if not (directory / name).is_file():
            raise FileNotFoundError(f"Missing model file: {str(directory / name)!r}")
        actual = sha256_of(directory / name)
        if actual != expected:
            raise ValueError(f"{str(directory / name)!r} has sha256 {actual}, not the {expected} it was written with: "
                             "it was changed or replaced since. Write the folder again.")


def unaccounted(directory: Path) -> list[str]:
    """What in ``directory`` its manifest does not list: files and links (a folder holding no listed
    file counts once, as ``name/``). Without a manifest that is everything."""
    manifest = read_manifest(directory)
    listed = set(manifest["files"]) | {MANIFEST_FILE} if manifest else set()
    parents = {str(parent) for name in listed for parent in PurePosixPath(name).parents} - {"."}
    extra = []
    for root, dirs, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        for name in list(dirs):
            relative = (base / name).as_posix()
            if (Path(root) / name).is_symlink() or relative not in parents:
                extra.append(relative if (Path(root) / name).is_symlink() else relative + "/")
                dirs.remove(name)  # not walked: counted once
        extra += [(base / name).as_posix() for name in files
                  if (base / name).as_posix() not in listed or (Path(root) / name).is_symlink()]
    return sorted(extra)


def describe(names: list[str]) -> str:
    """``3 item(s): a, b, c``; past :data:`SHOWN` names, ``(and N more)``."""
    shown = ", ".join(names[:SHOWN]) + (f" (and {len(names) - SHOWN} more)" if len(names) > SHOWN else "")
    return f"{len(names)} item(s): {shown}"


def _replace_refusal(folder: Path, kind: str, shown: Path) -> str | None:
    """Why the existing ``folder`` may not be replaced by an output of ``kind`` (``None``: it may).
    ``shown`` is the name messages use (the folder may have been moved to a hidden name meanwhile)."""
    if folder.is_symlink():
        return f"{str(shown)!r} is a symbolic link; write to a real folder (the link and what it points to are left alone)."
    if not folder.is_dir():
        return f"{str(shown)!r} is a file, not a folder; choose a folder name."
    if not any(folder.iterdir()):
        return None
    manifest, extra = read_manifest(folder), unaccounted(folder)
    if manifest is None:
        return (f"{str(shown)!r} is not empty and has no {MANIFEST_FILE} of {WRITER}, so it is not an output of this "
                f"package; it holds {describe(extra)}. Choose a new or empty folder.")
    if manifest.get("kind") != kind:
        found = KIND_NAMES.get(manifest.get("kind"), f"an output of kind {manifest.get('kind')!r}")
        return f"{str(shown)!r} holds {found}, not {KIND_NAMES.get(kind, kind)}; it is left alone. Choose another folder."
    if extra:
        return (f"{str(shown)!r} holds files its {MANIFEST_FILE} does not list, which would be lost: {describe(extra)}. "
                "Move them away or choose another folder.")
    return None


def check_replaceable(target: str | os.PathLike, kind: str, sources: Iterable[str | os.PathLike] = ()) -> None:
    """The one rule for writing a folder of ``kind`` at ``target``, replacing what is there.

    Args:
        target: The folder to write: missing, empty, or an earlier output of ``kind`` holding nothing
            its manifest does not list (fewer files is fine: a missing file of ours loses nothing).
        kind: :data:`MODEL_KIND` or :data:`ONNX_KIND`.
        sources: Folders and files the write reads from (the data, the model being exported).

    Raises:
        ValueError: ``target`` is a symbolic link, or it and a source lie inside one another
            (compared after resolving links).
        FileExistsError: ``target`` may not be replaced (the message says why).
    """
    target = Path(target).expanduser()
    if target.is_symlink():
        raise ValueError(_replace_refusal(target, kind, target))
    resolved = target.resolve()
    for source in sources:
        source = Path(source).expanduser().resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise ValueError(f"{str(target)!r} and {str(source)!r}, which this write reads, lie inside one "
                             "another; write to a folder outside it.")
    if target.exists():
        refusal = _replace_refusal(target, kind, target)
        if refusal:
            raise FileExistsError(refusal)


def current_umask() -> int:
    """The process umask (reading it means setting it for an instant; nothing here runs threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_ordinary_permissions(path: str | os.PathLike) -> None:
    """Gives ``path`` (and everything below a folder) ``0666 & ~umask`` (files) or ``0777 & ~umask`` (folders)."""
    mask = current_umask()
    path = Path(path)
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not item.is_symlink():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~mask)


def _sibling(target: Path, tag: str) -> Path:
    """A hidden, unused name beside ``target`` (``.name.tag-xxxxxxxx``)."""
    while True:
        candidate = target.with_name(f".{target.name}.{tag}-{secrets.token_hex(4)}")
        if not candidate.exists():
            return candidate


def staging_folder(target: Path) -> Path:
    """Makes a hidden folder beside ``target`` to write into (``.name.tmp-xxxxxxxx``, ``0777 & ~umask``),
    holding the writer marker (this process), so that a killed writer's folder is removed by the next
    write into the same parent folder (:func:`remove_leftovers`). The caller removes it when done."""
    folder = _sibling(target, "tmp")
    os.mkdir(folder, 0o777)  # the umask applies, unlike with mkdtemp's 0o700
    try:
        (folder / WRITER_MARKER).write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def write_atomically(target: str | os.PathLike, write: Callable[[Path], None], is_dir: bool = False,
                     kind: str | None = None, sources: Iterable[str | os.PathLike] = (),
                     overwrite: bool = True) -> None:
    """Writes into a hidden path beside ``target``, then renames it into place.

    If ``write`` fails, ``target`` is untouched and the hidden path is removed. A file replaces an old
    one in one step (``os.replace``). A folder gets a ``manifest.json`` of ``kind`` listing every file
    ``write`` put there with its sha256. The final move happens only when nothing is at ``target``,
    or, with ``overwrite``, when what is there passes :func:`check_replaceable`'s rule; an existing
    folder is first renamed away and the rule is applied to what was moved, so a folder that appeared
    since the start is never lost (it is renamed back, and the write refused). The old copy is deleted
    last. Other writes' leftovers in the same parent folder are then removed (:func:`remove_leftovers`).

    Args:
        target: The file or folder to create or replace.
        write: Writes the content to the path it is given (an empty file, or an empty folder with ``is_dir``).
        is_dir: ``target`` is a folder.
        kind: The folder's manifest kind; required with ``is_dir``.
        sources: What ``write`` reads from; a folder ``target`` may neither contain nor lie in one.
        overwrite: A folder: replace an earlier output of ``kind`` found at ``target`` (else refuse any).

    Raises:
        FileExistsError, ValueError: ``target`` may not be written (see :func:`check_replaceable`).
        WriteError: the file system refused (a full disk, a permission), naming the path and the cause.
    """
    target = Path(target).expanduser()
    if is_dir:
        if kind is None:
            raise ValueError("write_atomically(..., is_dir=True) needs the folder's manifest kind.")
        check_replaceable(target, kind, sources)
        if not overwrite and (target.is_symlink() or (target.is_dir() and any(target.iterdir()))):
            raise FileExistsError(f"{str(target)!r} exists; pass overwrite to replace an earlier output of this "
                                  "package.")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_dir:
            temporary = staging_folder(target)
        else:
            temporary = _sibling(target, "tmp")
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as error:
        raise WriteError(f"cannot write {target}: {error.strerror or error}") from error
    try:
        write(temporary)
        if is_dir:
            write_manifest(temporary, kind, skip=[WRITER_MARKER])
            (temporary / WRITER_MARKER).unlink()
        apply_ordinary_permissions(temporary)
        if is_dir:
            _move_folder_into_place(temporary, target, kind, overwrite)
        else:
            os.replace(temporary, target)
    except BaseException as error:
        shutil.rmtree(temporary, ignore_errors=True) if temporary.is_dir() else temporary.unlink(missing_ok=True)
        cause = file_system_error(error)
        if cause is not None and not isinstance(error, (FileExistsError, WriteError)):
            raise WriteError(f"cannot write {target}: {cause.strerror or cause}") from error
        raise
    remove_leftovers(target.parent)


_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
"""How libraries written in Rust (safetensors, tokenizers) name the OS error behind their own exception types."""


def file_system_error(error: BaseException) -> OSError | None:
    """The file-system error behind ``error`` (a full disk, a permission), or ``None``.

    ``error`` itself when it is an ``OSError``; else the first ``OSError`` it was raised from (``raise ...
    from``); else the OS error a Rust library names in its message (safetensors raises ``SafetensorError: ... No space left
    on device (os error 28)``, which is no ``OSError``).
    """
    seen = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__
    match = _RUST_OS_ERROR.search(str(error)) if isinstance(error, Exception) else None
    if match:
        code = int(match[1])
        return OSError(code, os.strerror(code))
    return None


def _move_folder_into_place(new: Path, target: Path, kind: str, overwrite: bool) -> None:
    """Renames ``new`` to ``target``; whatever is at ``target`` by then is checked where it was moved to."""
    try:
        os.rename(new, target)  # nothing there, or an empty folder (which holds nothing to lose)
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise
    old = _sibling(target, "old")
    os.rename(target, old)  # one step: what is checked below is exactly what was there
    refusal = _replace_refusal(old, kind, target) if overwrite else (
        f"{str(target)!r} appeared while this was written; it is left alone (pass overwrite to replace an earlier "
        f"output of this package).")
    if refusal:
        os.rename(old, target)
        raise FileExistsError(refusal)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old, target)  # roll back: the old folder is where it was
        raise
    shutil.rmtree(old, ignore_errors=True)


def add_file(folder: str | os.PathLike, name: str, write: Callable[[Path], None], kind: str) -> Path:
    """Adds the file ``name`` to a folder this package wrote, and its sha256 to the folder's manifest.

    The file and the new manifest are each written beside their place and renamed in. A file of that
    name is replaced only when the manifest lists it.

    Raises:
        FileExistsError: ``folder`` is not an output of ``kind``, or an unlisted file has that name.
    """
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    if manifest is None or manifest.get("kind") != kind:
        raise FileExistsError(f"{str(folder)!r} is not {KIND_NAMES.get(kind, kind)} written by {WRITER}; "
                              f"write {name} elsewhere.")
    target = folder / name
    if (target.exists() or target.is_symlink()) and name not in manifest["files"]:
        raise FileExistsError(f"{str(target)!r} exists and {MANIFEST_FILE} does not list it; it is left alone.")
    write_atomically(target, write)
    files = {**manifest["files"], name: sha256_of(target)}
    record = {"written_by": WRITER, "kind": kind, "files": dict(sorted(files.items()))}
    write_atomically(folder / MANIFEST_FILE,
                     lambda path: path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8"))
    return target


def remove_leftovers(parent: Path) -> list[Path]:
    """Removes the hidden folders that killed writes left in ``parent``; returns them.

    A leftover is a folder named like ``.<name>.tmp-xxxxxxxx`` or ``.<name>.old-xxxxxxxx`` (8 hex
    digits) that :func:`write_atomically` made: it holds our writer marker naming a process of this
    machine that no longer runs, or, for a minute at least, it has been empty or held our manifest
    and nothing it does not list. Anything else is left alone.
    """
    removed = []
    if not parent.is_dir():
        return removed
    for item in parent.iterdir():
        if _LEFTOVER.fullmatch(item.name) and not item.is_symlink() and item.is_dir() and _is_ours_and_stale(item):
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
    # No marker: empty (just made), or whole with its manifest (about to be renamed, or an old copy):
    # ours only when nothing unlisted is there, stale only after a minute.
    ours = not any(folder.iterdir()) or (read_manifest(folder) is not None and not unaccounted(folder))
    return ours and time.time() - folder.stat().st_mtime > EMPTY_LEFTOVER_SECONDS


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True
