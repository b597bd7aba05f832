"""Shared pieces of the subcommands: clear errors, argument checks and output checks (no heavy library)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from mtt_helpers.manifest import KIND_NAMES, check_replaceable


def fail(message: str) -> None:
    """Prints ``error: message`` to stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def int_at_least(minimum: int, maximum: int | None = None, why: str = "") -> Callable[[str], int]:
    """An argparse ``type=`` that accepts integers in ``[minimum, maximum]`` and explains a refusal.

    Args:
        minimum: The smallest value allowed.
        maximum: The largest value allowed, or ``None``.
        why: Appended to the refusal, e.g. ``"(one row per class at least)"``.

    Example:
        ``parser.add_argument("--epochs", type=int_at_least(1))``
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            allowed = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise argparse.ArgumentTypeError(f"must be an integer {allowed}{' ' + why if why else ''}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def check_writable_parent(target: Path, shown: str) -> None:
    """Refuses, before any work, an output whose folder cannot be made or written in: the nearest
    existing ancestor must be a writable folder (outputs are written beside their place, then renamed).

    Args:
        target: The output file or folder.
        shown: How the message names it, e.g. ``"--report notes/run.md"``.
    """
    parent = Path(os.path.abspath(target.expanduser())).parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{shown}: {existing} is a file, so the folder {parent} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{shown}: the folder {existing} is not writable")


def check_writable_file(path: str, flag: str) -> Path:
    """Refuses, before any work, an output file that cannot be written: a folder, a read-only file,
    or a place whose folder cannot be made or written in. Returns the path, ``~`` expanded."""
    target = Path(path).expanduser()
    if target.is_dir():
        fail(f"{flag} {path} is a directory; name the file to write")
    if target.exists() and not os.access(target, os.W_OK):
        fail(f"{flag} {path} is read-only")
    check_writable_parent(target, f"{flag} {path}")
    return target


def check_output_folder(target: Path, shown: str, kind: str, sources: list[Path], overwrite: bool) -> None:
    """Refuses, before any work, an output folder that exists without ``--overwrite``, may not be
    replaced (:func:`mtt_helpers.manifest.check_replaceable`), or cannot be written.

    Args:
        target: The folder to write.
        shown: How messages name it, e.g. ``"--out my_model"``.
        kind: Its manifest kind.
        sources: Folders the command reads from.
        overwrite: ``--overwrite`` was given.
    """
    if (target.exists() or target.is_symlink()) and not overwrite:
        fail(f"{shown} already exists; pass --overwrite to replace {KIND_NAMES[kind]} written earlier")
    try:
        check_replaceable(target, kind, sources)
    except (ValueError, FileExistsError) as error:
        fail(f"{shown}: {error}")
    check_writable_parent(target, shown)
