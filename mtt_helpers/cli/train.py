"""Train the tutorial's recommended multi-task model and save it (the command-line tool).

    mtt train --data-dir DIR --out MODEL_DIR

Topic from ``DIR/huffpost_news_category``, sentiment from ``DIR/tweeteval_sentiment`` (each
``train.csv``/``dev.csv`` with ``text,label``). The default is the recommended recipe
(:func:`mtt_helpers.training.recipe_config`): all training rows, joint training with a masked
loss, the whole encoder fine-tuned (lr 5e-5, linear warmup then decay, gradient clipping) with
both heads (lr 1e-3), 128 tokens, batches grouped by length, bf16 autocast where the hardware runs
it natively, 2 epochs. The kept epoch is picked on a validation slice carved from each task's
training rows (seeded, stratified); dev is scored once, on the saved model reloaded as it will be
served (its saved token limit, fp32). Shows a progress bar with an ETA, prints the scores, and
writes MODEL_DIR (with training_args.json: the settings and the data used) only when done
(``--report`` also writes a Markdown summary of the run).

This is the command-line tool; the training library it calls is ``mtt_helpers.training``.
Arguments and output paths are checked before any data is read; ``--overwrite`` replaces only an
earlier saved model holding nothing its manifest.json does not list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtt_helpers.cli.common import check_output_folder, check_writable_file, fail, int_at_least
from mtt_helpers.config import SENTIMENT_LABELS, TOPIC_LABELS
from mtt_helpers.manifest import MODEL_KIND

VALIDATION_SHARE, VALIDATION_CAP = 0.05, 1000
"""Default validation slice of each task: 5% of its training rows, at most 1,000 (at least one per class)."""


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt train`` and its options."""
    most_classes = max(len(TOPIC_LABELS), len(SENTIMENT_LABELS))
    per_class = int_at_least(most_classes, why="(one row per class at least)")
    parser = subparsers.add_parser("train", help="train the recommended model on the external datasets and save it",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--out", required=True, help="model directory to write (must not exist unless --overwrite)")
    parser.add_argument("--topic-dataset", default="huffpost_news_category", help="subfolder with topic labels")
    parser.add_argument("--sentiment-dataset", default="tweeteval_sentiment", help="subfolder with sentiment labels")
    parser.add_argument("--max-per-task", type=per_class, default=None,
                        help="seeded stratified sample of at most this many training rows per task (default: all rows)")
    parser.add_argument("--validation-size", type=per_class, default=None,
                        help="rows per task carved from its training rows (seeded, stratified) to pick the epoch "
                             f"on (default: {VALIDATION_SHARE * 100:.0f}%% of them, at most {VALIDATION_CAP:,}, at "
                             "least one per class); dev is scored once, on the kept epoch")
    parser.add_argument("--layers", type=layers_argument, default="all",
                        help="top encoder layers to fine-tune, or 'all' for the whole encoder (default all)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 autocast where the hardware runs it natively, else fp32 (default auto)")
    parser.add_argument("--epochs", type=int_at_least(1), default=2, help="training epochs (default 2)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it is an earlier saved model holding only the files its manifest lists")
    parser.add_argument("--report", help="also write a Markdown summary of the run (data, recipe, time, scores) here")
    parser.set_defaults(run=run)


def check_outputs(args: argparse.Namespace, out: Path, data_dir: Path) -> None:
    """Refuses, before any data is read, an ``--out`` or ``--report`` that could not be written."""
    check_output_folder(out, f"--out {args.out}", MODEL_KIND, [data_dir], args.overwrite)
    if args.report:
        report = check_writable_file(args.report, "--report").resolve()
        if report == out.resolve() or out.resolve() in report.parents:
            fail(f"--report {args.report} lies inside --out, which is replaced as a whole; write it elsewhere")


def run(args: argparse.Namespace) -> None:
    """Checks the options and outputs, reads the data, trains, saves, then scores the saved model on dev."""
    out = Path(args.out).expanduser()
    data_dir = Path(args.data_dir).expanduser()
    if not data_dir.is_dir():
        fail(f"data directory not found: {args.data_dir}")
    check_outputs(args, out, data_dir)

    from mtt_helpers.model import encoder_layer_count  # imports torch: only once the cheap checks have passed

    layers = encoder_layer_count()
    if args.layers != "all" and args.layers > layers:
        fail(f"--layers {args.layers}: the encoder has {layers} layers")

    from mtt_helpers.cli.train_report import run_report
    from mtt_helpers.data import multitask_frame
    from mtt_helpers.files import write_atomically
    from mtt_helpers.model import MultiTaskSentenceTransformer
    from mtt_helpers.notebook import quiet, set_seed
    from mtt_helpers.training import evaluate, recipe_config, train

    quiet()
    frames = read_datasets(args)
    train_parts, validation_parts = split_training_rows(args, frames)
    dev_frame = multitask_frame(topic=frames["topic", "dev"], sentiment=frames["sentiment", "dev"])
    print(f"training on {len(train_parts['topic'])} topic + {len(train_parts['sentiment'])} sentiment examples; "
          f"picking the epoch on {len(validation_parts['topic'])} + {len(validation_parts['sentiment'])} "
          "validation rows held out of the training data", file=sys.stderr)

    set_seed(args.seed)
    model = MultiTaskSentenceTransformer()
    config = recipe_config(trainable_encoder_layers=args.layers, epochs=args.epochs, precision=args.precision,
                           seed=args.seed, show_progress_bar=True)
    result = train(model, multitask_frame(**train_parts), multitask_frame(**validation_parts), config,
                   selection_split="validation")
    print(result.history.round(4).to_string(index=False), file=sys.stderr)
    try:
        model.save(out, include_encoder=True, training_args=config,
                   training_data=data_record(args, train_parts, validation_parts, dev_frame))
    except (ValueError, FileExistsError) as error:  # --out changed while training
        fail(f"cannot write --out: {error}")
    served = MultiTaskSentenceTransformer.load(out)  # scored exactly as predict, export and serve will run it
    metrics = evaluate(served, dev_frame)
    for task, values in metrics.items():
        print(f"dev {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    if args.report:
        report = run_report(args.argv, train_parts, validation_parts, config, result, metrics,
                            served.config.max_seq_length)
        write_atomically(Path(args.report).expanduser(), lambda path: path.write_text(report))
    print(f"saved to {args.out} ({result.seconds:.0f} s, {result.precision})")


def read_datasets(args: argparse.Namespace) -> dict:
    """``{(task, split): frame}`` of ``--topic-dataset`` and ``--sentiment-dataset``; fails on a
    missing or unreadable file, or a dataset whose labels belong to the other task."""
    from mtt_helpers.data import load_external

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
    from mtt_helpers.data import stratified_sample, validation_split

    train_parts, validation_parts = {}, {}
    for task in ("topic", "sentiment"):
        rows = frames[task, "train"]
        if args.max_per_task is not None:
            rows = stratified_sample(rows, args.max_per_task, seed=args.seed)
        classes = rows["label"].nunique()
        size = args.validation_size or min(VALIDATION_CAP, max(classes, round(VALIDATION_SHARE * len(rows))))
        if size >= len(rows):
            fail(f"{task}: a validation slice of {size} rows leaves none of its {len(rows)} training rows to train on")
        train_parts[task], validation_parts[task] = validation_split(rows, size, seed=args.seed)
    return train_parts, validation_parts


def data_record(args: argparse.Namespace, train_parts: dict, validation_parts: dict, dev_frame) -> dict:
    """The data facts saved in ``training_args.json``: datasets, rows of each split, sampling and seed."""
    return {
        "datasets": {"topic": args.topic_dataset, "sentiment": args.sentiment_dataset},
        "rows": {"train": {task: len(part) for task, part in train_parts.items()},
                 "validation": {task: len(part) for task, part in validation_parts.items()},
                 "dev": {task: int(dev_frame[task].notna().sum()) for task in ("topic", "sentiment")}},
        "max_per_task": args.max_per_task, "validation_size": args.validation_size, "seed": args.seed,
        "epoch_picked_on": "validation", "scored_on": "dev",
    }


def layers_argument(value: str) -> int | str:
    """``--layers``: ``all`` or an integer >= 0."""
    if value == "all":
        return value
    if not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected 'all' or an integer >= 0, got {value!r}")
    return int_at_least(0)(value)
