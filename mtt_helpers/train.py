"""Train the tutorial's recommended multi-task model and save it.

    python -m mtt_helpers.train --data-dir DIR --out MODEL_DIR

Topic from ``DIR/huffpost_news_category``, sentiment from ``DIR/tweeteval_sentiment`` (each
``train.csv``/``dev.csv`` with ``text,label``). The recommended configuration, from notebook 03:
joint training with a masked loss, the top 3 encoder layers fine-tuned (lr 1e-4) and both heads
(lr 1e-3), 2 epochs, best dev epoch kept. Prints dev metrics; writes MODEL_DIR only when done.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mtt_helpers.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding the datasets' subfolders")
    parser.add_argument("--out", required=True, help="model directory to write (must not exist unless --overwrite)")
    parser.add_argument("--topic-dataset", default="huffpost_news_category", help="subfolder with topic labels")
    parser.add_argument("--sentiment-dataset", default="tweeteval_sentiment", help="subfolder with sentiment labels")
    parser.add_argument("--max-per-task", type=int, default=12000,
                        help="seeded stratified sample of at most this many training rows per task (default 12000)")
    parser.add_argument("--layers", type=int, default=3, help="top encoder layers to fine-tune (default 3)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    args = parser.parse_args(argv)

    from pathlib import Path

    from mtt_helpers.cli_common import fail, write_atomically

    if Path(args.out).exists() and not args.overwrite:
        fail(f"{args.out} already exists; pass --overwrite to replace it")
    if not Path(args.data_dir).is_dir():
        fail(f"data directory not found: {args.data_dir}")

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
    write_atomically(args.out, lambda path: model.save(path, include_encoder=True), is_dir=True)
    print(f"saved to {args.out} ({result.seconds:.0f} s)")


if __name__ == "__main__":
    main()
