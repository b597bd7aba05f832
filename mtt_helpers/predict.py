"""Classify the sentences of a CSV file by topic and sentiment.

    python -m mtt_helpers.predict MODEL_DIR INPUT.csv [-o OUT.csv]
    python -m mtt_helpers.predict ONNX_DIR INPUT.csv --backend onnx [--precision fp32|int8|int8-safe]

INPUT.csv needs a ``text`` column. The output has ``text, text_class, sentiment`` and one
``prob_<task>_<label>`` column per class; without ``-o`` it goes to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def read_texts(path: str) -> list[str]:
    """Reads and validates the ``text`` column of a CSV file."""
    from mtt_helpers.cli_common import fail

    if not Path(path).is_file():
        fail(f"input file not found: {path}")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as error:
        fail(f"cannot read {path} as CSV: {error}")
    if "text" not in frame.columns:
        fail(f"{path} has no 'text' column; its columns are {list(frame.columns)}")
    if frame.empty:
        fail(f"{path} has no rows")
    empty = frame.index[frame["text"].str.strip() == ""].tolist()
    if empty:
        rows = ", ".join(str(i + 2) for i in empty[:10])  # +2: header line, 1-based
        fail(f"{path}: empty text on line(s) {rows}{' ...' if len(empty) > 10 else ''}")
    return frame["text"].tolist()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mtt_helpers.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "model_dir", help="a model directory written by MultiTaskSentenceTransformer.save (torch) or export_onnx (onnx)"
    )
    parser.add_argument("input_csv", help="CSV file with a 'text' column")
    parser.add_argument("-o", "--output", help="output CSV (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per forward pass (default 32)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="run the torch model or an ONNX export")
    parser.add_argument("--onnx-file", default=None,
                        help="with --backend onnx: the graph in MODEL_DIR (default model.onnx; not with --precision)")
    parser.add_argument("--precision", choices=["fp32", "int8", "int8-safe"], default=None,
                        help="with --backend onnx: fp32 (model.onnx, default), int8 (model.int8.onnx) or int8-safe "
                             "(int8, then texts with a top-2 logit margin below --cascade-margin re-run in fp32: "
                             ">= 99%% of fp32's labels on dev, faster than torch)")
    parser.add_argument("--cascade-margin", type=float, default=None,
                        help="with --precision int8-safe: the margin below which a text is re-run in fp32 (default 0.2)")
    args = parser.parse_args(argv)

    from mtt_helpers.cli_common import fail, write_atomically
    from mtt_helpers.model import MultiTaskSentenceTransformer
    from mtt_helpers.utils import quiet

    quiet()
    texts = read_texts(args.input_csv)
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


if __name__ == "__main__":
    main()
