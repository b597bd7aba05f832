"""The ``mtt`` command: ``mtt train | predict | export | serve | fetch-data`` (also ``python -m mtt_helpers``).

Each subcommand's module has ``add_parser(subparsers)`` and ``run(args)``: its options, the checks
that need no model, then one library call. The heavy libraries (torch, sentence-transformers,
onnxruntime, FastAPI) are imported inside ``run``, so ``mtt --help`` and argument errors answer at once.
Errors print ``error: ...`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys

from mtt_helpers.cli import export, fetch_data, predict, serve, train

SUBCOMMANDS = (train, predict, export, serve, fetch_data)
"""The subcommand modules, in the order ``mtt --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The ``mtt`` parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="mtt", description="The multi-task Sentence Transformer tutorial's command-line tools.")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parses ``argv`` (default: the process's arguments) and runs the subcommand it names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed (the train report quotes it)

    from mtt_helpers.notebook import show_input_warnings

    show_input_warnings()  # each call reports its own cut or dropped texts
    args.run(args)
