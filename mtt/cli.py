"""The ``mtt`` command: ``mtt train | predict | export | serve | fetch-data`` (also ``python -m mtt``).

Each subcommand checks its arguments and outputs first, with no heavy library imported, so ``mtt
--help`` and every argument error answer at once; then it makes one library call. Errors print one
line, ``error: ...``, to stderr and exit with status 2. No output may be an input of the same command
(a data file, the model, the raw folder), and every output is written beside its place and renamed
in (``mtt_core.files``), so a failed or interrupted run leaves what was there.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from mtt.backends import PREDICTOR_PRECISIONS
from mtt_core.files import KIND_NAMES, MODEL_KIND, ONNX_KIND, WriteError, check_replaceable
from mtt_core.labels import SENTIMENT_DATASET, SENTIMENT_LABELS, TOPIC_DATASET, TOPIC_LABELS
from mtt_core.model_files import CONFIG_FILE, HEADS_FILE, INT8_FILE, ONNX_FILE, OPSETS

VALIDATION_SHARE, VALIDATION_CAP = 0.05, 1000
"""``mtt train``'s default validation slice of each task: 5% of its training rows, at most 1,000 (at least one per class)."""


# ----------------------------------------------------------------------------- checks every command shares
def fail(message: str) -> NoReturn:
    """Prints ``error: message`` to stderr and exits with status 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def int_at_least(minimum: int, why: str = "") -> Callable[[str], int]:
    """An argparse ``type=`` that accepts integers ``>= minimum`` and explains a refusal."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}{' ' + why if why else ''}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in some messages
    return parse


def _resolved(path: str | os.PathLike) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


Inputs = Iterable[tuple[str | os.PathLike, str]]
"""What a command reads (or replaces as a whole), each with the name messages give it: ``(path, "--data-dir")``."""


def refuse_inputs(output: str | os.PathLike, shown: str, inputs: Inputs, role: str = "reads") -> None:
    """Refuses an output that is, holds or lies inside anything in ``inputs`` (links resolved), naming both.

    Args:
        output: The file or folder the command writes.
        shown: How messages name it, e.g. ``"--report run.md"``.
        inputs: ``(path, name)`` of each thing the command ``role``.
        role: What the command does with them: ``"reads"``, or ``"replaces as a whole"`` (another output folder).
    """
    target = _resolved(output)
    for path, name in inputs:
        source = _resolved(path)
        relation = ("is" if target == source else "lies inside" if source in target.parents
                    else "holds" if target in source.parents else None)
        if relation:
            fail(f"{shown} {relation} {name} ({source}), which this command {role}; write elsewhere")


def check_writable_parent(target: Path, shown: str) -> None:
    """Refuses an output whose folder cannot be made or written in (outputs are written beside their place)."""
    parent = Path(os.path.abspath(target.expanduser())).parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{shown}: {existing} is a file, so the folder {parent} cannot be created")
    if not os.access(existing, os.W_OK | os.X_OK):
        fail(f"{shown}: the folder {existing} is not writable")


def check_writable_file(path: str, shown: str, inputs: Inputs, outputs: Inputs = ()) -> Path:
    """Refuses an output file that is a folder, read-only, an input (or inside one), inside another output
    folder of the command, or in a folder that cannot be written."""
    target = Path(path).expanduser()
    if target.is_dir():
        fail(f"{shown} is a directory; name the file to write")
    if target.exists() and not os.access(target, os.W_OK):
        fail(f"{shown} is read-only")
    refuse_inputs(path, shown, inputs)
    refuse_inputs(path, shown, outputs, role="replaces as a whole")
    check_writable_parent(target, shown)
    return target


def check_output_folder(target: Path, shown: str, kind: str, inputs: Inputs, overwrite: bool) -> None:
    """Refuses an output folder that is the current folder or one above it, exists without ``--overwrite``,
    is, holds or lies inside an input, may not be replaced, or cannot be written."""
    if _resolved(target) in (_resolved("."), *_resolved(".").parents):
        fail(f"{shown} is the current folder or one above it; name a new folder")
    inputs = list(inputs)
    refuse_inputs(target, shown, inputs)
    if (target.exists() or target.is_symlink()) and not overwrite:
        fail(f"{shown} already exists; pass --overwrite to replace {KIND_NAMES[kind]} written earlier")
    try:
        check_replaceable(target, kind, [path for path, _ in inputs])
    except (ValueError, FileExistsError) as error:
        fail(f"{shown}: {error}")
    check_writable_parent(target, shown)


def write_or_fail(what: str, write: Callable[[], Any]) -> Any:
    """Runs a write; a refusal or a file-system error (a full disk, a permission) is one line, not a traceback."""
    try:
        return write()
    except WriteError as error:  # names the path and the cause
        fail(f"{what}: {error}")
    except (OSError, ValueError) as error:  # FileExistsError (a folder appeared meanwhile), ...
        fail(f"cannot write {what}: {error}")


# ----------------------------------------------------------------------------- mtt train
TRAIN_DOC = """Train the tutorial's recommended multi-task model and save it.

    mtt train --data-dir DIR --out MODEL_DIR
    torchrun --nproc-per-node 2 -m mtt train --data-dir DIR --out MODEL_DIR    # across 2 processes

Topic from DIR/huffpost_news_category, sentiment from DIR/tweeteval_sentiment (each train.csv and
dev.csv with text,label). The recipe (mtt_helpers.recipe_config): all training rows, joint training
with a masked loss, the whole encoder fine-tuned (lr 5e-5, warmup then linear decay, clipping) with
both heads (lr 1e-3), 128 tokens, length-grouped batches of 32, bf16 autocast where native (fp16 with
loss scaling on a GPU without bf16), 2 epochs. The kept epoch is picked on a validation slice carved
from each task's training rows; dev is scored once, on the saved model reloaded as it will be served.
Under torchrun every process takes its share of each batch of 32 and process 0 writes the model."""


def add_train(subparsers: argparse._SubParsersAction) -> None:
    per_class = int_at_least(max(len(TOPIC_LABELS), len(SENTIMENT_LABELS)), why="(one row per class at least)")
    parser = subparsers.add_parser("train", help="train the recommended model on the public datasets and save it",
                                   description=TRAIN_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--out", required=True, help="model folder to write (must not exist unless --overwrite)")
    parser.add_argument("--topic-dataset", default=TOPIC_DATASET, help="subfolder with topic labels")
    parser.add_argument("--sentiment-dataset", default=SENTIMENT_DATASET, help="subfolder with sentiment labels")
    parser.add_argument("--max-per-task", type=per_class, default=None,
                        help="seeded stratified sample of at most this many training rows per task (default: all rows)")
    parser.add_argument("--validation-size", type=per_class, default=None,
                        help="rows per task carved from its training rows (seeded, stratified) to pick the epoch on "
                             f"(default: {VALIDATION_SHARE * 100:.0f}%% of them, at most {VALIDATION_CAP:,}); dev is "
                             "scored once, on the kept epoch")
    parser.add_argument("--layers", type=layers_argument, default="all",
                        help="top encoder layers to fine-tune, or 'all' for the whole encoder (default all)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp16", "fp32"], default="auto",
                        help="auto: bf16 where native, fp16 with loss scaling on a GPU without bf16, else fp32")
    parser.add_argument("--epochs", type=int_at_least(1), default=2, help="training epochs (default 2)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it is an earlier saved model holding only the files its manifest lists")
    parser.add_argument("--report", help="also write a Markdown summary of the run (data, recipe, time, scores) here")
    parser.set_defaults(run=run_train)


def layers_argument(value: str) -> int | str:
    """``--layers``: ``all`` or an integer >= 0."""
    if value == "all":
        return value
    if not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected 'all' or an integer >= 0, got {value!r}")
    return int_at_least(0)(value)


def run_train(args: argparse.Namespace) -> None:
    """Checks options and outputs, reads the data, trains (in one process or under torchrun), saves on
    process 0, then scores the saved model on dev."""
    out, data_dir = Path(args.out).expanduser(), Path(args.data_dir).expanduser()
    if not data_dir.is_dir():
        fail(f"data directory not found: {args.data_dir}")
    check_output_folder(out, f"--out {args.out}", MODEL_KIND, [(data_dir, "--data-dir")], args.overwrite)
    if args.report:
        check_writable_file(args.report, f"--report {args.report}", [(data_dir, "--data-dir")],
                            outputs=[(out, "--out")])

    from mtt_helpers.encoder import encoder_layer_count  # imports torch: only once the cheap checks have passed

    if args.layers != "all" and args.layers > encoder_layer_count():
        fail(f"--layers {args.layers}: the encoder has {encoder_layer_count()} layers")

    import torch

    from mtt_helpers import MultiTaskSentenceTransformer, evaluate, multitask_frame, quiet, recipe_config, set_seed, train
    from mtt_helpers.precision import describe_precision

    quiet()
    device = start_processes()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    frames = read_datasets(args)
    train_parts, validation_parts = split_training_rows(args, frames)
    dev_frame = multitask_frame(topic=frames["topic", "dev"], sentiment=frames["sentiment", "dev"])
    config = recipe_config(trainable_encoder_layers=args.layers, epochs=args.epochs, precision=args.precision,
                           seed=args.seed)
    set_seed(args.seed)
    model = MultiTaskSentenceTransformer().to(device)
    if rank == 0:
        print(f"training on {len(train_parts['topic'])} topic + {len(train_parts['sentiment'])} sentiment examples; "
              f"picking the epoch on {len(validation_parts['topic'])} + {len(validation_parts['sentiment'])} "
              f"validation rows held out of the training data; {describe_precision(args.precision, device)}",
              file=sys.stderr)
    result = train(model, multitask_frame(**train_parts), multitask_frame(**validation_parts), config)
    if rank == 0:
        print(result.history.round(4).to_string(index=False), file=sys.stderr)
        record = data_record(args, train_parts, validation_parts, dev_frame, result.processes)
        write_or_fail(f"--out {args.out}", lambda: model.save(out, include_encoder=True, overwrite=args.overwrite,
                                                               training_args=config, training_data=record))
        served = MultiTaskSentenceTransformer.load(out)  # scored exactly as predict, export and serve will run it
        metrics = evaluate(served, dev_frame)
        for task, values in metrics.items():
            print(f"dev {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        if args.report:
            from mtt_core.files import write_atomically

            report = run_report(args, train_parts, validation_parts, config, result, metrics, served.max_seq_length)
            write_or_fail(f"--report {args.report}", lambda: write_atomically(
                Path(args.report).expanduser(), lambda path: path.write_text(report, encoding="utf-8")))
        print(f"saved to {args.out} ({result.seconds:.0f} s, {result.precision}, {result.processes} process(es))")
    if torch.distributed.is_initialized():
        torch.distributed.barrier()  # the others wait until process 0 has written the model
        torch.distributed.destroy_process_group()


def start_processes():
    """The device of this process. Under ``torchrun`` (``WORLD_SIZE`` > 1) it also starts the process group:
    gloo on CPUs, NCCL on GPUs (one GPU per process, ``LOCAL_RANK``). Global state, so only here, at the entry."""
    import torch

    processes = int(os.environ.get("WORLD_SIZE", "1"))
    on_gpu = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if on_gpu else "cpu")
    if processes > 1 and not torch.distributed.is_initialized():
        if on_gpu:
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if on_gpu else "gloo")
    return device


def read_datasets(args: argparse.Namespace) -> dict:
    """``{(task, split): frame}`` of ``--topic-dataset`` and ``--sentiment-dataset``; fails on a missing or
    unreadable file, or a dataset whose labels belong to the other task."""
    from mtt_helpers import load_external

    frames = {}
    try:
        for task, name in (("topic", args.topic_dataset), ("sentiment", args.sentiment_dataset)):
            for split in ("train", "dev"):
                frame = load_external(name, split, args.data_dir)
                if frame.attrs["task"] != task:
                    fail(f"{name}/{split}.csv has {frame.attrs['task']} labels, expected {task} labels")
                frames[task, split] = frame
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    return frames


def split_training_rows(args: argparse.Namespace, frames: dict) -> tuple[dict, dict]:
    """Each task's training rows (``--max-per-task`` sampled) cut into ``(train, validation)`` parts."""
    from mtt_helpers import stratified_sample, validation_split

    train_parts, validation_parts = {}, {}
    for task in ("topic", "sentiment"):
        rows = frames[task, "train"]
        if args.max_per_task is not None:
            rows = stratified_sample(rows, args.max_per_task, seed=args.seed)
        size = args.validation_size or min(VALIDATION_CAP, max(rows["label"].nunique(), round(VALIDATION_SHARE * len(rows))))
        if size >= len(rows):
            fail(f"{task}: a validation slice of {size} rows leaves none of its {len(rows)} training rows to train on")
        train_parts[task], validation_parts[task] = validation_split(rows, size, seed=args.seed)
    return train_parts, validation_parts


def data_record(args: argparse.Namespace, train_parts: dict, validation_parts: dict, dev_frame, processes: int) -> dict:
    """The data facts saved in ``training_args.json``: datasets, rows of each split, sampling, seed, processes."""
    return {
        "datasets": {"topic": args.topic_dataset, "sentiment": args.sentiment_dataset},
        "rows": {"train": {task: len(part) for task, part in train_parts.items()},
                 "validation": {task: len(part) for task, part in validation_parts.items()},
                 "dev": {task: int(dev_frame[task].notna().sum()) for task in ("topic", "sentiment")}},
        "max_per_task": args.max_per_task, "validation_size": args.validation_size, "seed": args.seed,
        "processes": processes, "epoch_picked_on": "validation", "scored_on": "dev",
    }


def run_report(args, train_parts, validation_parts, config, result, metrics, max_seq_length: int) -> str:
    """The Markdown summary of one run: the command, the machine, the data, the recipe, which split picked
    the epoch and which scored it, and the dev scores."""
    import platform

    import pandas as pd
    import torch

    from mtt_helpers.measure import markdown_table
    from mtt_helpers.training import MAIN_METRIC

    row = pd.DataFrame([{
        "topic rows": len(train_parts["topic"]), "sentiment rows": len(train_parts["sentiment"]),
        "encoder layers": config.trainable_encoder_layers, "epochs": config.epochs, "best epoch": result.best_epoch,
        "precision": result.precision, "processes": result.processes, "minutes": result.seconds / 60,
        "dev topic macro-F1": metrics["topic"][MAIN_METRIC["topic"]],
        "dev sentiment macro-recall": metrics["sentiment"][MAIN_METRIC["sentiment"]],
    }]).set_index("topic rows")
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    selection = (f"The epoch was picked on a validation slice carved from the training rows "
                 f"({len(validation_parts['topic'])} topic + {len(validation_parts['sentiment'])} sentiment, "
                 f"seed {config.seed}); dev was scored once, on the kept epoch, with the saved model reloaded "
                 f"({max_seq_length} tokens, fp32).")
    return (f"`mtt {' '.join(args.argv)}` on {machine}:\n\n"
            + markdown_table(row, formats={"minutes": "{:.1f}", "dev topic macro-F1": "{:.3f}",
                                            "dev sentiment macro-recall": "{:.3f}"}) + "\n\n" + selection + "\n")


# ----------------------------------------------------------------------------- mtt predict
PREDICT_DOC = """Classify the sentences of a CSV file by topic and sentiment.

    mtt predict MODEL_DIR INPUT.csv [-o OUT.csv]
    mtt predict ONNX_DIR INPUT.csv --backend onnx [--precision fp32|int8|int8-safe]

INPUT.csv needs a text column; a text holding a comma must be quoted. The output has text,
text_class, sentiment and one prob_<task>_<label> column per class; without -o it goes to stdout."""


def add_predict(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="classify the texts of a CSV file (torch model or ONNX export)",
                                   description=PREDICT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved model (torch) or an ONNX export (onnx)")
    parser.add_argument("input_csv", help="CSV file with a 'text' column")
    parser.add_argument("-o", "--output", help="output CSV (default: stdout)")
    parser.add_argument("--batch-size", type=int_at_least(1), default=32, help="sentences per forward pass (default 32)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="the torch model or an ONNX export")
    parser.add_argument("--precision", choices=PREDICTOR_PRECISIONS, default=None,
                        help="with --backend onnx: fp32 (model.onnx, default), int8 (model.int8.onnx) or int8-safe "
                             "(int8, then texts with a top-2 logit margin below --cascade-margin re-run in fp32)")
    parser.add_argument("--cascade-margin", type=float, default=None,
                        help="with --precision int8-safe: the margin below which a text is re-run in fp32 (default 0.2)")
    parser.set_defaults(run=run_predict)


def read_texts(path: str) -> list[str]:
    """The ``text`` column of a CSV file, exactly as written; one line naming the file (and line) otherwise."""
    if not Path(path).is_file():
        fail(f"input file not found: {path}")
    from mtt_core.csv_files import read_text_csv
    from mtt_core.predictions import is_text

    try:
        frame, lines = read_text_csv(path)
    except ValueError as error:
        fail(f"cannot read {path} as CSV: {error}")
    if "text" not in frame.columns:
        fail(f"{path} has no 'text' column; its columns are {list(frame.columns)}")
    if frame.empty:
        fail(f"{path} has no rows")
    empty = [line for line, text in zip(lines, frame["text"]) if not is_text(text)]
    if empty:
        fail(f"{path}: empty text on line(s) {', '.join(map(str, empty[:10]))}{' ...' if len(empty) > 10 else ''}")
    return frame["text"].tolist()


def run_predict(args: argparse.Namespace) -> None:
    """Checks the paths, reads the texts, loads the model, and writes the predictions."""
    if args.output:
        check_writable_file(args.output, f"-o {args.output}", [(args.input_csv, "INPUT.csv"),
                                                               (args.model_dir, "MODEL_DIR")])
    texts = read_texts(args.input_csv)
    from mtt.backends import load_predictor

    if args.backend == "torch":
        from mtt_helpers.notebook import quiet

        quiet()  # the libraries' logging; the ONNX backend imports none of them

    try:
        model = load_predictor(args.model_dir, args.backend, args.precision, args.cascade_margin)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    except ImportError as error:
        fail(f"--backend onnx needs onnxruntime (pip install 'mtt_helpers[onnx]'): {error}")
    try:
        predictions = model.predict(texts, batch_size=args.batch_size).rename(columns={"sentence": "text"})
    except ValueError as error:  # e.g. logits that are not finite
        fail(str(error))
    if args.output:
        from mtt_core.files import write_atomically

        write_or_fail(f"-o {args.output}", lambda: write_atomically(
            args.output, lambda path: predictions.to_csv(path, index=False)))
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    else:
        predictions.to_csv(sys.stdout, index=False)


# ----------------------------------------------------------------------------- mtt export
EXPORT_DOC = """Export a saved model as a self-contained ONNX folder.

    mtt export MODEL_DIR OUT_DIR [--int8 [--calibration-csv FILE]] [--overwrite]

OUT_DIR receives model.onnx (and model.int8.onnx with --int8), config.json, the tokenizer files and a
manifest.json with every file's sha256; run it with mtt predict OUT_DIR INPUT.csv --backend onnx. The
int8 graph is quantised statically: its activation ranges are measured once on calibration texts
(--calibration-csv, or the bundled dataset's 1,800 sentences), so a text's prediction never depends on
the other texts of its batch. --overwrite replaces only an earlier export holding nothing its manifest
does not list."""


def add_export(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a saved model as a self-contained ONNX folder (int8 too)",
                                   description=EXPORT_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved model")
    parser.add_argument("out_dir", help="the ONNX folder to write (must not exist unless --overwrite)")
    parser.add_argument("--int8", action="store_true", help=f"also write {INT8_FILE}, statically quantised to int8")
    parser.add_argument("--calibration-csv", metavar="FILE",
                        help="with --int8: a CSV whose 'text' column calibrates the int8 activation ranges (default: "
                             "the 1,800 sentences of the bundled dataset)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT_DIR if it is an earlier ONNX export holding only the files its manifest lists")
    parser.add_argument("--opset", type=int, default=17,
                        help=f"ONNX opset, {OPSETS[0]} to {OPSETS[-1]} (default 17)")
    parser.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    """Checks everything before the (slow) model load, then exports into a hidden folder renamed into place."""
    model_dir, out_dir = Path(args.model_dir).expanduser(), Path(args.out_dir).expanduser()
    if not model_dir.is_dir():
        fail(f"model directory not found: {args.model_dir}")
    missing = [name for name in (CONFIG_FILE, HEADS_FILE) if not (model_dir / name).is_file()]
    if missing:
        fail(f"{args.model_dir} is not a saved model (no {' or '.join(missing)}); write one with save() or mtt train")
    if args.opset not in OPSETS:
        fail(f"--opset must be from {OPSETS[0]} to {OPSETS[-1]}, got {args.opset}")
    if args.calibration_csv is not None and not args.int8:
        fail("--calibration-csv calibrates the int8 graph; add --int8")
    inputs = [(model_dir, "MODEL_DIR")] + ([(Path(args.calibration_csv), "--calibration-csv")]
                                           if args.calibration_csv else [])
    check_output_folder(out_dir, f"OUT_DIR {args.out_dir}", ONNX_KIND, inputs, args.overwrite)
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
        import onnxruntime  # noqa: F401
    except ImportError as error:
        fail(f"exporting needs onnx and onnxruntime (pip install 'mtt_helpers[onnx]'): {error}")

    from mtt_core.files import write_atomically
    from mtt_helpers import MultiTaskSentenceTransformer, quiet
    from mtt_helpers.onnx import (
        bundled_calibration_texts, check_exportable, check_opset, csv_calibration_texts, quantize_int8,
        write_export_files,
    )

    calibration = None
    if args.int8:
        try:
            calibration = csv_calibration_texts(args.calibration_csv) if args.calibration_csv else bundled_calibration_texts()
        except (FileNotFoundError, ValueError) as error:
            fail(f"--calibration-csv: {error}")
    try:
        check_opset(args.opset)
    except ValueError as error:
        fail(f"--opset: {error}")
    quiet()
    try:
        model = MultiTaskSentenceTransformer.load(model_dir, device="cpu")
        check_exportable(model)
    except (FileNotFoundError, ValueError, OSError) as error:
        fail(f"cannot load the model in {args.model_dir}: {error}")

    def write(directory: Path) -> None:
        write_export_files(model, directory / ONNX_FILE, opset=args.opset)
        if args.int8:
            quantize_int8(directory / ONNX_FILE, directory / INT8_FILE, calibration)

    write_or_fail(f"OUT_DIR {args.out_dir}", lambda: write_atomically(
        out_dir, write, is_dir=True, kind=ONNX_KIND, sources=[path for path, _ in inputs], overwrite=args.overwrite))
    print(f"wrote {ONNX_FILE}{f' and {INT8_FILE}' if args.int8 else ''} with config.json and the tokenizer to "
          f"{args.out_dir}", file=sys.stderr)
    if calibration is not None:
        print(f"{INT8_FILE} was calibrated on {len(calibration.texts):,} texts from {calibration.source}", file=sys.stderr)


# ----------------------------------------------------------------------------- mtt serve
SERVE_DOC = """Serve a model over HTTP: POST /predict, GET /health, /openapi.json and /docs.

    mtt serve MODEL_DIR [--backend torch|onnx] [--precision fp32|int8|int8-safe] [--port 8000]

Concurrent requests share model calls: the texts of every waiting request join one queue, and the
model runs on up to --max-batch-texts of them at a time, waiting at most --max-wait-ms for a batch to
fill. A client that has not sent its whole request within --read-timeout-s is disconnected; at most
--max-connections connections are open at once. /docs (Swagger UI) loads its page from a CDN and needs
the internet; /openapi.json, the same API as JSON, does not. The service is mtt.service."""


def add_serve(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("serve", help="serve a model over HTTP (POST /predict, GET /health, /docs)",
                                   description=SERVE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", help="a saved model (--backend torch) or an ONNX export (--backend onnx)")
    parser.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="default torch")
    parser.add_argument("--precision", choices=PREDICTOR_PRECISIONS, default=None,
                        help="with --backend onnx: fp32 (default), int8 or int8-safe (int8 with fp32 re-runs)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--max-texts", type=int, default=256, help="most texts per request; more gets 413 (default 256)")
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000,
                        help="largest request body; larger gets 413 (default 1000000)")
    parser.add_argument("--on-long-text", choices=["truncate", "refuse"], default="truncate",
                        help="texts over the model's token limit: classify the tokens up to it and flag them (default), "
                             "or answer 422")
    parser.add_argument("--max-batch-texts", type=int_at_least(1), default=64,
                        help="most texts per model call, from one or more requests (default 64)")
    parser.add_argument("--max-wait-ms", type=float, default=5.0,
                        help="how long a queued text waits for a fuller batch, in ms (default 5; 0: no wait)")
    parser.add_argument("--max-queue-texts", type=int_at_least(1), default=2048,
                        help="most texts waiting for the model; more gets 503 with Retry-After (default 2048)")
    parser.add_argument("--request-timeout-s", type=float, default=30.0,
                        help="seconds a request may take; later gets 504 and its waiting texts are dropped (default 30)")
    parser.add_argument("--read-timeout-s", type=float, default=10.0,
                        help="seconds a client has to send its whole request; later it is disconnected (default 10)")
    parser.add_argument("--max-connections", type=int_at_least(1), default=None,
                        help="most connections open at once; more are refused (default 4096, or fewer where the "
                             "process may open fewer files)")
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> None:
    """Checks the options and binds the port, then serves until Ctrl-C; the model loads once the server listens."""
    if not Path(args.model_dir).is_dir():
        fail(f"model directory not found: {args.model_dir}")
    if not 0 <= args.port <= 65535:
        fail(f"--port must be between 0 and 65535, got {args.port}")
    from mtt.service import (
        FILES_BESIDES_CONNECTIONS, PortInUse, ServiceSettings, bind_socket, create_app, default_max_connections,
        raise_open_file_limit, run_server,
    )

    try:
        settings = ServiceSettings(max_texts=args.max_texts, max_body_bytes=args.max_body_bytes,
                                   on_long_text=args.on_long_text, max_batch_texts=args.max_batch_texts,
                                   max_wait_ms=args.max_wait_ms, max_queue_texts=args.max_queue_texts,
                                   request_timeout_s=args.request_timeout_s, read_timeout_s=args.read_timeout_s,
                                   max_connections=args.max_connections or default_max_connections())
        raise_open_file_limit(settings.max_connections + FILES_BESIDES_CONNECTIONS)
        sock = bind_socket(args.host, args.port)  # before anything loads: a busy port is one line, rc 2
    except (ValueError, PortInUse) as error:
        fail(str(error))
    from mtt.backends import load_predictor

    def load() -> Any:  # in a background thread once the server listens, so /health answers 503 meanwhile
        if args.backend == "torch":
            from mtt_helpers.notebook import quiet

            quiet()
        return load_predictor(args.model_dir, args.backend, args.precision)

    print(f"serving on http://{args.host}:{sock.getsockname()[1]} (API schema at /openapi.json); loading the model...",
          file=sys.stderr)
    try:
        run_server(create_app(load, settings), settings, sock)
    except RuntimeError as error:  # the model failed to load
        hint = " (pip install 'mtt_helpers[onnx]')" if "ImportError" in str(error) else ""
        fail(f"cannot load the model in {args.model_dir}: {error}{hint}")


# ----------------------------------------------------------------------------- mtt fetch-data
FETCH_DOC = """Download the public sources and build the datasets the notebooks read.

    mtt fetch-data --dest DIR                                   # download, check, build, write
    mtt fetch-data --dest DIR --raw-dir RAW --no-download       # build from files already in RAW

Downloads the raw files of the public sources, each pinned to a commit (from MTT_DATA_BASE_URL,
default https://raw.githubusercontent.com), checks every raw file against its recorded sha256 (those
already in --raw-dir too), builds the train and dev splits of tweeteval_sentiment, financial_phrasebank
and huffpost_news_category (test splits are used as filters and never written), and writes
DEST/<dataset>/{train,dev}.csv: all six files or none, also with --overwrite. Point MTT_DATA_DIR at
DEST to use them; without MTT_DATA_DIR the notebooks do all this on first use, into the download cache
~/.cache/mtt_helpers/data (MTT_CACHE_DIR)."""


def add_fetch_data(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("fetch-data", help="download the public sources and rebuild the public datasets",
                                   description=FETCH_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", required=True, help="folder to write <dataset>/{train,dev}.csv into (MTT_DATA_DIR)")
    parser.add_argument("--raw-dir", help="keep the raw downloads here (default: a temporary folder, deleted after); "
                                          "not inside --dest, nor --dest inside it")
    parser.add_argument("--no-download", action="store_true", help="build from the files already in --raw-dir")
    parser.add_argument("--overwrite", action="store_true", help="replace the build's existing train.csv/dev.csv files")
    parser.set_defaults(run=run_fetch_data)


def run_fetch_data(args: argparse.Namespace) -> None:
    """Checks the folders and existing files, downloads (unless ``--no-download``), checks, builds, writes."""
    if args.no_download and not args.raw_dir:
        fail("--no-download needs --raw-dir (the folder holding the raw files)")
    from mtt.data.fetch import ChecksumError, DataSettings, fetch_datasets

    dest = Path(args.dest).expanduser().resolve()
    try:
        settings = DataSettings.from_env()
        built = fetch_datasets(dest, args.raw_dir, download_raw=not args.no_download, overwrite=args.overwrite,
                               base_url=settings.base_url, timeout=settings.download_timeout)
    except (OSError, ValueError, ChecksumError) as error:
        fail(str(error))
    for name, splits in built.items():
        sizes = ", ".join(f"{split} {len(frame)}" for split, frame in splits.items())
        print(f"{name}: {sizes}; dropped {splits['train'].attrs.get('stats', {})}")
    print(f"wrote {2 * len(built)} files under {dest}")


# ----------------------------------------------------------------------------- the parser
def build_parser() -> argparse.ArgumentParser:
    """The ``mtt`` parser with every subcommand, in the order ``mtt --help`` lists them."""
    parser = argparse.ArgumentParser(prog="mtt", description="The multi-task Sentence Transformer tutorial's command-line tools.")
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True, metavar="COMMAND")
    for add in (add_train, add_predict, add_export, add_serve, add_fetch_data):
        add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Parses ``argv`` (default: the process's arguments) and runs the subcommand it names."""
    import warnings

    from mtt_core.predictions import InputWarning

    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command line as typed (the train report quotes it)
    warnings.filterwarnings("always", category=InputWarning)  # each call reports its own cut or dropped texts
    args.run(args)
