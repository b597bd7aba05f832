"""Training-step throughput: frozen (cached) vs top-3 vs whole encoder, in fp32 and in the mixed
precision the device runs natively (bf16 on a CPU with avx512_bf16/amx_bf16, bf16 or fp16 on a GPU).

    MTT_DATA_DIR=../shared/data python benchmarks/train_throughput.py

Trains on 320 TweetEval + HuffPost training texts (160 each, seeded), batch 32, at the model's 128
tokens, length-grouped batches, for two epochs of 10 steps each without a held-out set, and reports the
second epoch's examples per second (the first warms up kernels and fills caches). Also reports the
padding of random vs length-grouped batches over *all* training texts. Prints a table and writes
nothing. Timings depend on what else the machine runs: run it alone.
"""

from __future__ import annotations

import copy
import platform

import numpy as np
import pandas as pd

from mtt.data import locate_data
from mtt_core.predictions import token_counts
from mtt_helpers import (
    MultiTaskSentenceTransformer, TrainConfig, batch_indices, load_encoder, load_external, multitask_frame, quiet,
    set_seed, stratified_sample, train,
)
from mtt_helpers.measure import markdown_table
from mtt_helpers.precision import describe_precision, resolve_precision
from mtt_helpers.training import padding_counts

PER_TASK = 160
BATCH = 32
STEPS = 10


def main() -> None:
    quiet()
    folder = locate_data().folder
    if folder is None:
        raise SystemExit("No public datasets (MTT_DATA_DIR=bundled, or offline): set MTT_DATA_DIR to their folder.")
    full = {"sentiment": load_external("tweeteval_sentiment", "train", folder),
            "topic": load_external("huffpost_news_category", "train", folder)}
    frame = multitask_frame(**{task: stratified_sample(rows, PER_TASK, seed=0) for task, rows in full.items()})
    encoder = load_encoder()
    native = resolve_precision("auto", encoder.device)
    print(f"{platform.processor() or platform.machine()}; {describe_precision('auto', encoder.device)}; "
          f"{len(frame)} texts, batch {BATCH}, {STEPS} steps per epoch")
    rows = []
    for layers in (0, 3, "all"):
        for precision in dict.fromkeys(("fp32", native)):
            set_seed(0)
            model = MultiTaskSentenceTransformer(copy.deepcopy(encoder))
            config = TrainConfig(trainable_encoder_layers=layers, precision=precision, epochs=2, steps_per_epoch=STEPS,
                                 batch_size=BATCH, show_progress_bar=False)
            seconds = train(model, frame, None, config).history["seconds"].iloc[-1]
            rows.append({"encoder layers trained": layers, "precision": precision,
                         "examples/s": round(STEPS * BATCH / seconds, 1), "s per step": round(seconds / STEPS, 3)})
    print(markdown_table(pd.DataFrame(rows).set_index("encoder layers trained")))

    model = MultiTaskSentenceTransformer(encoder)
    texts = pd.concat([full["sentiment"]["text"], full["topic"]["text"]], ignore_index=True).tolist()
    counts = np.asarray(token_counts(model.encoder.tokenizer, texts, model.max_seq_length)[0])
    ratio = {}
    for grouping in (False, True):
        batches = batch_indices(np.zeros(len(texts)), TrainConfig(batch_size=BATCH, length_grouping=grouping),
                                np.random.default_rng(0), counts)
        padded, real = padding_counts(batches, counts)
        ratio[grouping] = padded / real
    print(f"\nall {len(texts)} training texts, {model.max_seq_length} tokens max, batch {BATCH}: token positions per "
          f"real token {ratio[False]:.3f} shuffled, {ratio[True]:.3f} length-grouped "
          f"({1 - ratio[True] / ratio[False]:.0%} fewer positions computed)")


if __name__ == "__main__":
    main()
