"""What this package's writers wrote, and the one rule that decides whether a folder may be replaced.

Every folder written here (``MultiTaskSentenceTransformer.save``, ``export_onnx``, ``mtt train``,
``mtt export``) ends with ``manifest.json``::

    {"written_by": "mtt_helpers", "kind": "model", "files": ["config.json", "encoder/...", ...]}

``files`` are the relative POSIX paths of every file the writer put there. :func:`check_replaceable`
lets a writer replace a folder only when nothing in it is unaccounted for: the folder is missing or
empty, or it holds its manifest and files the manifest lists (fewer is fine: a missing file of ours
loses nothing of the user's), of the kind being written. A symbolic link is never replaced, and
neither is a folder that contains, or lies inside, a folder the writer reads from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST_FILE = "manifest.json"
"""The manifest's name inside every folder this package writes."""

WRITER = "mtt_helpers"
"""The manifest's ``written_by``: a ``manifest.json`` without it is not ours."""

MODEL_KIND = "model"
"""``kind`` of a saved torch model (``MultiTaskSentenceTransformer.save``, ``mtt train``)."""

ONNX_KIND = "onnx"
"""``kind`` of an ONNX export (``export_onnx``, ``mtt export``)."""

KIND_NAMES = {MODEL_KIND: "a saved model", ONNX_KIND: "an ONNX export"}
"""How messages name each kind."""

SHOWN = 5
"""How many unaccounted-for names an error lists before ``(and N more)``."""


def folder_files(directory: Path, skip: Iterable[str] = ()) -> list[str]:
    """Every file and symbolic link below ``directory`` (links not followed), as sorted relative POSIX paths."""
    skip = set(skip)
    found = []
    for root, dirs, files in os.walk(directory):
        base = Path(root).relative_to(directory)
        found += [(base / name).as_posix() for name in files + [d for d in dirs if (Path(root) / d).is_symlink()]]
    return sorted(name for name in found if name not in skip)


def write_manifest(directory: Path, kind: str, skip: Iterable[str] = ()) -> list[str]:
    """Writes ``directory/manifest.json`` listing every file in ``directory`` (but ``skip``); returns that list."""
    files = folder_files(directory, skip={MANIFEST_FILE, *skip})
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
    if record.get("written_by") != WRITER or not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return record


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


def check_replaceable(target: str | os.PathLike, kind: str, sources: Iterable[str | os.PathLike] = ()) -> None:
    """The one rule for writing a folder of ``kind`` at ``target``, replacing what is there.

    Args:
        target: The folder to write (missing, empty, or an earlier output of ``kind``).
        kind: :data:`MODEL_KIND` or :data:`ONNX_KIND`.
        sources: Folders the write reads from (the data, the model being exported).

    Raises:
        ValueError: ``target`` is a symbolic link, or it and a source lie inside one another
            (compared after resolving links).
        FileExistsError: ``target`` is a file, or a non-empty folder with no manifest of ours, of
            another kind, or holding anything its manifest does not list (named in the message).
    """
    target = Path(target).expanduser()
    if target.is_symlink():
        raise ValueError(f"{str(target)!r} is a symbolic link; write to a real folder (the link and what it "
                         "points to are left alone).")
    resolved = target.resolve()
    for source in sources:
        source = Path(source).expanduser().resolve()
        if resolved == source or source in resolved.parents or resolved in source.parents:
            raise ValueError(f"{str(target)!r} and {str(source)!r}, which this write reads, lie inside one "
                             "another; write to a folder outside it.")
    if not target.exists():
        return
    if not target.is_dir():
        raise FileExistsError(f"{str(target)!r} is a file, not a folder; choose a folder name.")
    if not any(target.iterdir()):
        return
    manifest = read_manifest(target)
    extra = unaccounted(target)
    if manifest is None:
        raise FileExistsError(f"{str(target)!r} is not empty and has no {MANIFEST_FILE} of {WRITER}, so it is not an "
                              f"output of this package; it holds {describe(extra)}. Choose a new or empty folder.")
    if manifest.get("kind") != kind:
        found = KIND_NAMES.get(manifest.get("kind"), f"an output of kind {manifest.get('kind')!r}")
        raise FileExistsError(f"{str(target)!r} holds {found}, not {KIND_NAMES.get(kind, kind)}; it is left alone. "
                              "Choose another folder.")
    if extra:
        raise FileExistsError(f"{str(target)!r} holds files its {MANIFEST_FILE} does not list, which would be lost: "
                              f"{describe(extra)}. Move them away or choose another folder.")
