"""Training-step throughput: fp32 vs bf16 autocast, frozen (cached) vs top-3 vs whole encoder.

    MTT_DATA_DIR=../shared/data python benchmarks/train_throughput.py

Trains on ~320 TweetEval + HuffPost training texts (160 each, seeded), batch 32, 128 tokens,
length-grouped batches, for two epochs of 10 steps each without a dev set, and reports the
second epoch's examples per second (the first warms up kernels and fills caches). Also reports
the padding of random vs length-grouped batches over *all* training texts. Prints a table and
writes nothing: caches stay in memory. Timings depend on what else the machine runs.
"""

from __future__ import annotations

import copy
import platform

import numpy as np
import pandas as pd

from mtt_helpers import MultiTaskSentenceTransformer, load_encoder, quiet, set_seed
from mtt_helpers.data import data_dir, load_external, multitask_frame, stratified_sample
from mtt_helpers.precision import cpu_has_native_bf16
from mtt_helpers.predictions import token_counts
from mtt_helpers.reporting import markdown_table
from mtt_helpers.training import TrainConfig, batch_indices, padded_token_ratio, train, truncated_to

PER_TASK = 160
BATCH = 32
STEPS = 10


def main() -> None:
    quiet()
    folder = data_dir()
    if folder is None:
        raise SystemExit("No public datasets (MTT_DATA_DIR=bundled, or offline): set MTT_DATA_DIR to the folder holding "
                         "tweeteval_sentiment/ and huffpost_news_category/, or go online to download them.")
    full = {"sentiment": load_external("tweeteval_sentiment", "train", folder),
            "topic": load_external("huffpost_news_category", "train", folder)}
    frame = multitask_frame(**{task: stratified_sample(rows, PER_TASK, seed=0) for task, rows in full.items()})
    encoder = load_encoder(device="cpu")
    print(f"{platform.processor() or platform.machine()}, native bf16: {cpu_has_native_bf16()}; "
          f"{len(frame)} texts, batch {BATCH}, {STEPS} steps per epoch")

    rows = []
    for layers in (0, 3, "all"):
        for precision in ("fp32", "bf16"):
            set_seed(0)
            model = MultiTaskSentenceTransformer(copy.deepcopy(encoder))
            config = TrainConfig(trainable_encoder_layers=layers, precision=precision, epochs=2, steps_per_epoch=STEPS,
                                 batch_size=BATCH, show_progress_bar=False, cache_dir=None)
            result = train(model, frame, None, config)
            seconds = result.history["seconds"].iloc[-1]
            rows.append({"encoder layers trained": layers, "precision": precision,
                         "examples/s": round(STEPS * BATCH / seconds, 1), "s per step": round(seconds / STEPS, 3)})
    table = pd.DataFrame(rows)
    print(markdown_table(table.set_index("encoder layers trained")))

    model = MultiTaskSentenceTransformer(encoder)
    texts = pd.concat([full["sentiment"]["text"], full["topic"]["text"]], ignore_index=True).tolist()
    with truncated_to(model, 128):
        counts = np.asarray(token_counts(model.encoder.tokenizer, texts, model.encoder.max_seq_length)[0])
    sources = np.zeros(len(texts))
    padding = {
        grouping: padded_token_ratio(
            batch_indices(sources, TrainConfig(batch_size=BATCH, length_grouping=grouping), np.random.default_rng(0), counts),
            counts)
        for grouping in (False, True)
    }
    print(f"\nall {len(texts)} training texts, 128 tokens max, batch {BATCH}: token positions per real token "
          f"{padding[False]:.3f} shuffled, {padding[True]:.3f} length-grouped "
          f"({1 - padding[True] / padding[False]:.0%} fewer positions computed)")


if __name__ == "__main__":
    main()
