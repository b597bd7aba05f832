"""Train the tutorial's recommended multi-task model and save it (the command-line tool).

    python -m mtt_helpers.train --data-dir DIR --out MODEL_DIR

Topic from ``DIR/huffpost_news_category``, sentiment from ``DIR/tweeteval_sentiment`` (each
``train.csv``/``dev.csv`` with ``text,label``). The recommended configuration, from notebook 03:
joint training with a masked loss, the top 3 encoder layers fine-tuned (lr 1e-4) and both heads
(lr 1e-3), 2 epochs, best dev epoch kept. Prints dev metrics; writes MODEL_DIR only when done.

This is the command-line tool; the training library it calls is ``mtt_helpers.training``.
Arguments are checked before any data is read; ``--overwrite`` replaces only a directory that
holds a saved model (``config.json`` + ``heads.safetensors``).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    from mtt_helpers.cli_common import int_at_least
    from mtt_helpers.config import SENTIMENT_LABELS, TOPIC_LABELS

    most_classes = max(len(TOPIC_LABELS), len(SENTIMENT_LABELS))
    parser = argparse.ArgumentParser(prog="python -m mtt_helpers.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--out", required=True, help="model directory to write (must not exist unless --overwrite)")
    parser.add_argument("--topic-dataset", default="huffpost_news_category", help="subfolder with topic labels")
    parser.add_argument("--sentiment-dataset", default="tweeteval_sentiment", help="subfolder with sentiment labels")
    parser.add_argument("--max-per-task", type=int_at_least(most_classes, why="(one row per class at least)"), default=12000,
                        help="seeded stratified sample of at most this many training rows per task (default 12000)")
    parser.add_argument("--layers", type=int_at_least(0), default=3, help="top encoder layers to fine-tune (default 3)")
    parser.add_argument("--epochs", type=int_at_least(1), default=2, help="training epochs (default 2)")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    args = parser.parse_args(argv)

    from pathlib import Path

    from mtt_helpers.cli_common import fail, write_atomically
    from mtt_helpers.config import CONFIG_FILE, HEADS_FILE, is_saved_model
    from mtt_helpers.encoder import encoder_layer_count

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
    if args.layers > layers:
        fail(f"--layers {args.layers}: the encoder has {layers} layers")

    from mtt_helpers.data import load_external, multitask_frame, stratified_sample
    from mtt_helpers.model import MultiTaskSentenceTransformer
    from mtt_helpers.training import TrainConfig, evaluate, train
    from mtt_helpers.utils import quiet, set_seed

    quiet()
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
    train_parts = {
        task: stratified_sample(frames[task, "train"], args.max_per_task, seed=args.seed) for task in ("topic", "sentiment")
    }
    train_frame = multitask_frame(**train_parts)
    dev_frame = multitask_frame(topic=frames["topic", "dev"], sentiment=frames["sentiment", "dev"])
    print(f"training on {len(train_parts['topic'])} topic + {len(train_parts['sentiment'])} sentiment examples",
          file=sys.stderr)

    set_seed(args.seed)
    model = MultiTaskSentenceTransformer()
    config = TrainConfig(trainable_encoder_layers=args.layers, encoder_lr=1e-4, epochs=args.epochs,
                         seed=args.seed, cache_dir=None)
    result = train(model, train_frame, dev_frame, config)
    metrics = evaluate(model, dev_frame)
    print(result.history.round(4).to_string(index=False), file=sys.stderr)
    for task, values in metrics.items():
        print(f"dev {task}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
    write_atomically(out, lambda path: model.save(path, include_encoder=True), is_dir=True)
    print(f"saved to {args.out} ({result.seconds:.0f} s)")


if __name__ == "__main__":
    main()
