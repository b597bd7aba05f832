"""Shared pieces of the subcommands: clear errors and argument checks (standard library only)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


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
