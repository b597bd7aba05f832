"""Export a saved model as a self-contained ONNX directory.

    mtt export MODEL_DIR OUT_DIR [--int8 [--calibration-csv FILE]] [--overwrite]

MODEL_DIR is a directory written by MultiTaskSentenceTransformer.save (or
mtt train). OUT_DIR receives model.onnx (and model.int8.onnx with --int8),
config.json and the tokenizer files; run it with
mtt predict OUT_DIR INPUT.csv --backend onnx [--precision int8|int8-safe].
The int8 graph is quantised statically: its activation ranges are measured once
on calibration texts (--calibration-csv, or the bundled dataset's 1,800
sentences), so a text's prediction never depends on the other texts of its batch.
OUT_DIR is written beside its final place and renamed when complete, so a failed export
leaves nothing behind; it gets a manifest.json listing its files, and --overwrite replaces only
an earlier export holding nothing that manifest does not list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtt_helpers.cli.common import check_output_folder, fail
from mtt_helpers.config import CONFIG_FILE, HEADS_FILE
from mtt_helpers.manifest import ONNX_KIND
from mtt_helpers.onnx.layout import INT8_FILE, ONNX_FILE


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt export`` and its options."""
    parser = subparsers.add_parser(
        "export",
        help="export a saved model as a self-contained ONNX directory (optionally int8 too)",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dir", help="a model directory written by MultiTaskSentenceTransformer.save")
    parser.add_argument("out_dir", help="the ONNX directory to write (must not exist unless --overwrite)")
    parser.add_argument("--int8", action="store_true", help=f"also write {INT8_FILE}, statically quantised to int8")
    parser.add_argument(
        "--calibration-csv", metavar="FILE",
        help="with --int8: a CSV whose 'text' column calibrates the int8 activation ranges; pick texts like "
             "those the model will see (default: the 1,800 sentences of the bundled dataset shipped in the package)",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="replace OUT_DIR if it is an earlier ONNX export holding only the files its manifest.json lists",
    )
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Checks everything before the (slow) model load, then exports into a temporary directory
    renamed into place. Exits with status 2 and writes nothing when MODEL_DIR is not a saved model,
    OUT_DIR exists (without ``--overwrite``, which only replaces an earlier ONNX export holding
    nothing its manifest does not list), is a symbolic link, or contains or lies inside MODEL_DIR."""
    model_dir, out_dir = Path(args.model_dir).expanduser(), Path(args.out_dir).expanduser()
    if not model_dir.is_dir():
        fail(f"model directory not found: {args.model_dir}")
    missing = [name for name in (CONFIG_FILE, HEADS_FILE) if not (model_dir / name).is_file()]
    if missing:
        fail(f"{args.model_dir} is not a saved model (no {' or '.join(missing)}); "
             "write one with MultiTaskSentenceTransformer.save or mtt train")
    check_output_folder(out_dir, f"OUT_DIR {args.out_dir}", ONNX_KIND, [model_dir], args.overwrite)
    if args.opset < 14:
        fail(f"--opset must be at least 14 (scaled dot-product attention), got {args.opset}")
    if args.calibration_csv is not None and not args.int8:
        fail("--calibration-csv calibrates the int8 graph; add --int8")
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime  # noqa: F401
    except ImportError as error:
        fail(f"exporting needs onnx and onnxruntime (pip install 'mtt_helpers[onnx]'): {error}")
    calibration = read_calibration(args.calibration_csv) if args.int8 else None

    from mtt_helpers.files import write_atomically
    from mtt_helpers.model import MultiTaskSentenceTransformer
    from mtt_helpers.notebook import quiet
    from mtt_helpers.onnx import check_exportable, quantize_int8
    from mtt_helpers.onnx.export import write_export_files

    quiet()
    try:
        model = MultiTaskSentenceTransformer.load(model_dir, device="cpu")  # at its saved max_seq_length
        check_exportable(model)
    except (FileNotFoundError, ValueError, OSError) as error:
        fail(f"cannot load the model in {args.model_dir}: {error}")

    def write(directory: Path) -> None:
        write_export_files(model, directory / ONNX_FILE, opset=args.opset)
        if args.int8:
            quantize_int8(directory / ONNX_FILE, directory / INT8_FILE, calibration)

    try:
        write_atomically(out_dir, write, is_dir=True, kind=ONNX_KIND, sources=[model_dir])
    except (ValueError, FileExistsError) as error:  # OUT_DIR changed while exporting
        fail(f"cannot write OUT_DIR: {error}")
    graphs = ONNX_FILE + (f" and {INT8_FILE}" if args.int8 else "")
    print(f"wrote {graphs} with config.json and the tokenizer to {args.out_dir}", file=sys.stderr)
    if calibration is not None:
        print(f"{INT8_FILE} was calibrated on {len(calibration.texts):,} texts from {calibration.source}", file=sys.stderr)


def read_calibration(path: str | None):
    """The calibration texts: ``path``'s ``text`` column, or the bundled dataset when ``path`` is ``None``.
    Exits with status 2 on a missing or unreadable file, before the model is loaded."""
    from mtt_helpers.onnx.calibration import bundled_calibration_texts, csv_calibration_texts

    if path is None:
        return bundled_calibration_texts()
    try:
        return csv_calibration_texts(path)
    except (FileNotFoundError, ValueError) as error:
        fail(f"--calibration-csv: {error}")
