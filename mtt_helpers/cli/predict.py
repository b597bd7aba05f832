"""Classify the sentences of a CSV file by topic and sentiment (the command-line tool).

    mtt predict MODEL_DIR INPUT.csv [-o OUT.csv]
    mtt predict ONNX_DIR INPUT.csv --backend onnx [--precision fp32|int8|int8-safe]

INPUT.csv needs a ``text`` column; a text containing a comma must be quoted. The output has
``text, text_class, sentiment`` and one ``prob_<task>_<label>`` column per class; without ``-o``
it goes to stdout.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mtt_helpers.backends import PREDICTOR_PRECISIONS
from mtt_helpers.cli.common import check_writable_file, fail, int_at_least


def read_texts(path: str) -> list[str]:
    """Reads and validates the ``text`` column of a CSV file, exactly as written.

    Exits with a clear message (naming the file and, where it applies, the line) on a missing
    or unreadable file, a row wider or narrower than the header, or an empty text.
    """
    if not Path(path).is_file():
        fail(f"input file not found: {path}")
    from mtt_helpers.data.csv_reader import read_text_csv  # pandas and the data package: after the cheap check

    try:
        frame, lines = read_text_csv(path)
    except ValueError as error:
        fail(f"cannot read {path} as CSV: {error}")
    if "text" not in frame.columns:
        fail(f"{path} has no 'text' column; its columns are {list(frame.columns)}")
    if frame.empty:
        fail(f"{path} has no rows")
    empty = [line for line, text in zip(lines, frame["text"]) if not text.strip()]
    if empty:
        shown = ", ".join(str(line) for line in empty[:10])
        fail(f"{path}: empty text on line(s) {shown}{' ...' if len(empty) > 10 else ''}")
    return frame["text"].tolist()


def check_output_path(output: str, input_csv: str) -> None:
    """Refuses, before any work, an ``-o`` that is a directory, the input file itself, read-only,
    or in a folder that cannot be made or written in."""
    check_writable_file(output, "-o")
    target = Path(output).expanduser().resolve()  # resolves "dir/../in.csv" and links
    source = Path(input_csv).expanduser().resolve()
    if target == source or (target.exists() and source.exists() and os.path.samefile(target, source)):
        fail(f"-o {output} is the input file; write the predictions to another file")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt predict`` and its options."""
    parser = subparsers.add_parser("predict", help="classify the texts of a CSV file (torch model or ONNX export)",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="a model directory written by MultiTaskSentenceTransformer.save (torch) or export_onnx (onnx)"
    )
    parser.add_argument("input_csv", help="CSV file with a 'text' column")
    parser.add_argument("-o", "--output", help="output CSV (default: stdout)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=32, help="sentences per forward pass (default 32)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="run the torch model or an ONNX export")
    parser.add_argument("--onnx-file", default=None,
                        help="with --backend onnx: the graph in MODEL_DIR (default model.onnx; not with --precision)")
    parser.add_argument("--precision", choices=PREDICTOR_PRECISIONS, default=None,
                        help="with --backend onnx: fp32 (model.onnx, default), int8 (model.int8.onnx) or int8-safe "
                             "(int8, then texts with a top-2 logit margin below --cascade-margin re-run in fp32: "
                             ">= 99%% of fp32's labels on dev, faster than torch)")
    parser.add_argument("--cascade-margin", type=float, default=None,
                        help="with --precision int8-safe: the margin below which a text is re-run in fp32 (default 0.2)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Checks the paths, reads the texts, loads the model, and writes the predictions."""
    if args.output:
        check_output_path(args.output, args.input_csv)
    texts = read_texts(args.input_csv)

    from mtt_helpers.files import write_atomically
    from mtt_helpers.notebook import quiet

    quiet()  # imports transformers to quiet its logging: after the cheap checks
    try:
        from mtt_helpers.backends import load_predictor

        model = load_predictor(args.model_dir, args.backend, args.precision, args.onnx_file, args.cascade_margin)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    except ImportError as error:
        fail(f"--backend onnx needs onnxruntime (pip install 'mtt_helpers[onnx]'): {error}")
    predictions = model.predict(texts, batch_size=args.batch_size).rename(columns={"sentence": "text"})
    if args.output:
        write_atomically(args.output, lambda path: predictions.to_csv(path, index=False))
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    else:
        predictions.to_csv(sys.stdout, index=False)
