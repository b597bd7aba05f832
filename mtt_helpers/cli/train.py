"""Train the tutorial's recommended multi-task model and save it (the command-line tool).

    mtt train --data-dir DIR --out MODEL_DIR

Topic from ``DIR/huffpost_news_category``, sentiment from ``DIR/tweeteval_sentiment`` (each
``train.csv``/``dev.csv`` with ``text,label``). The default is the recommended recipe
(:func:`mtt_helpers.training.recipe_config`, chosen on dev): all training rows, joint training
with a masked loss, the whole encoder fine-tuned (lr 5e-5, linear warmup then decay, gradient
clipping) with both heads (lr 1e-3), 128 tokens, batches grouped by length, bf16 autocast where
the hardware runs it natively, 2 epochs, best dev epoch kept. Shows a progress bar with an ETA,
prints dev metrics, and writes MODEL_DIR only when done (``--report`` also writes a Markdown
summary of the run).

This is the command-line tool; the training library it calls is ``mtt_helpers.training``.
Arguments are checked before any data is read; ``--overwrite`` replaces only a directory that
holds a saved model (``config.json`` + ``heads.safetensors``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mtt_helpers.cli.common import fail, int_at_least
from mtt_helpers.config import CONFIG_FILE, HEADS_FILE, SENTIMENT_LABELS, TOPIC_LABELS, is_saved_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``mtt train`` and its options."""
    most_classes = max(len(TOPIC_LABELS), len(SENTIMENT_LABELS))
    parser = subparsers.add_parser("train", help="train the recommended model on the external datasets and save it",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--out", required=True, help="model directory to write (must not exist unless --overwrite)")
    parser.add_argument("--topic-dataset", default="huffpost_news_category", help="subfolder with topic labels")
    parser.add_argument("--sentiment-dataset", default="tweeteval_sentiment", help="subfolder with sentiment labels")
    parser.add_argument("--max-per-task", type=int_at_least(most_classes, why="(one row per class at least)"), default=None,
                        help="seeded stratified sample of at most this many training rows per task (default: all rows)")
    parser.add_argument("--layers", type=layers_argument, default="all",
                        help="top encoder layers to fine-tune, or 'all' for the whole encoder (default all)")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="auto: bf16 autocast where the hardware runs it natively, else fp32 (default auto)")
    parser.add_argument("--epochs", type=int_at_least(1), default=2, help="training epochs (default 2)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    parser.add_argument("--report", help="also write a Markdown summary of the run (data, recipe, time, dev scores) here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    """Checks the options, reads the data, trains, and writes the model (and the report)."""
    from mtt_helpers.files import write_atomically
    from mtt_helpers.model import encoder_layer_count

    out = Path(args.out).expanduser().resolve()  # resolved: "--out data/.." names data's parent
    data_dir = Path(args.data_dir).expanduser().resolve()
    if out.exists() and not args.overwrite:
        fail(f"{args.out} already exists; pass --overwrite to replace it")
    if out.exists() and not is_saved_model(out):
        fail(f"--overwrite replaces only a saved model directory ({CONFIG_FILE} + {HEADS_FILE}); "
             f"{args.out} ({out}) is not one, so it is left alone")
    if not data_dir.is_dir():
        fail(f"data directory not found: {args.data_dir}")
    if out == data_dir or out in data_dir.parents:
        fail(f"--out {args.out} ({out}) would replace the data directory {args.data_dir}")
    layers = encoder_layer_count()
    if args.layers != "all" and args.layers > layers:
        fail(f"--layers {args.layers}: the encoder has {layers} layers")

    from mtt_helpers.data import multitask_frame, stratified_sample
    from mtt_helpers.model import MultiTaskSentenceTransformer
    from mtt_helpers.notebook import quiet, set_seed
    from mtt_helpers.training import evaluate, recipe_config, train

    quiet()
    frames = read_datasets(args)
    train_parts = {
        task: frames[task, "train"] if args.max_per_task is None else stratified_sample(frames[task, "train"], args.max_per_task, seed=args.seed)
        for task in ("topic", "sentiment")
    }
    train_frame = multitask_frame(**train_parts)
    dev_frame = multitask_frame(topic=frames["topic", "dev"], sentiment=frames["sentiment", "dev"])
    print(f"training on {len(train_parts['topic'])} topic + {len(train_parts['sentiment'])} sentiment examples",
          file=sys.stderr)

    set_seed(args.seed)
    model = MultiTaskSentenceTransformer()
    config = recipe_config(trainable_encoder_layers=args.layers, epochs=args.epochs, precision=args.precision,
                           seed=args.seed, show_progress_bar=True)
    result = train(model, train_frame, dev_frame, config)
    metrics = evaluate(model, dev_frame)  # fp32: what a loaded model predicts with
    print(result.history.round(4).to_string(index=False), file=sys.stderr)
    for task, values in metrics.items():
        print(f"dev {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    write_atomically(out, lambda path: model.save(path, include_encoder=True), is_dir=True)
    if args.report:
        report = run_report(args.argv, train_parts, config, result, metrics)
        write_atomically(Path(args.report), lambda path: path.write_text(report))
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


def layers_argument(value: str) -> int | str:
    """``--layers``: ``all`` or an integer >= 0."""
    if value == "all":
        return value
    if not value.lstrip("-").isdigit():
        raise argparse.ArgumentTypeError(f"expected 'all' or an integer >= 0, got {value!r}")
    return int_at_least(0)(value)


def run_report(argv, train_parts, config, result, metrics) -> str:
    """A Markdown summary of one training run (for the README: generated, never typed)."""
    import os
    import platform

    import torch

    import pandas as pd

    from mtt_helpers.reporting import markdown_table
    from mtt_helpers.training import MAIN_METRIC

    row = pd.DataFrame([{
        "topic rows": len(train_parts["topic"]), "sentiment rows": len(train_parts["sentiment"]),
        "encoder layers": config.trainable_encoder_layers, "epochs": config.epochs, "best epoch": result.best_epoch,
        "precision": result.precision, "minutes": result.seconds / 60,
        "dev topic macro-F1": metrics["topic"][MAIN_METRIC["topic"]],
        "dev sentiment macro-recall": metrics["sentiment"][MAIN_METRIC["sentiment"]],
    }]).set_index("topic rows")
    command = "mtt " + " ".join(str(a) for a in argv)
    machine = f"{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}"
    return (f"`{command}` on {machine}:\n\n"
            + markdown_table(row, formats={"minutes": "{:.1f}", "dev topic macro-F1": "{:.3f}",
                                            "dev sentiment macro-recall": "{:.3f}"}) + "\n")
