"""SetFit as its users run it, on chapter 04's labelled samples: the slow runs chapter 04 reads from a file.

    MTT_DATA_DIR=/path/to/data python benchmarks/setfit_defaults.py [--n 32 128 512] [--seeds 0 1 2]
        [--max-steps N] [--cap-512 634] [--precision fp32|auto]

SetFit's ``TrainingArguments`` defaults (setfit 1.x): ``max_steps=-1``, ``num_iterations=None``,
``sampling_strategy="oversampling"``, ``num_epochs=(1, 16)``, ``batch_size=(16, 2)``: the sampler
builds every same-label and every different-label pair of the n examples, and oversampling takes
the larger count twice (``mtt_helpers.training.setfit_default_steps``). That is 40 steps at n = 32,
634 at n = 128 and 10,131 at n = 512 for chapter 04's samples: about 5 minutes per n = 128 run on
a 2-core CPU in fp32, and n = 512 would take 16 times the steps, far beyond the chapter's time
budget. So this script runs them once, with the chapter's seeds and the chapter's samples (drawn by
the same calls), through the same function as the chapter (``mtt_helpers.training.train_setfit``),
and writes one row per run to ``notebooks/results/04_setfit_defaults.csv``; chapter 04 reads that
file and checks that each row's sample fingerprint equals that of the sample it drew itself.

The runs chapter 04 reads, and the commands that make them:

- at SetFit's defaults, in fp32 (SetFit's own precision on a CPU): ``--n 32 128`` (without ``--n``,
  n = 512 runs too, capped by ``--cap-512``: the chapter's 9c);
- compute-matched to the chapter's method 8, 40 pair steps: ``--max-steps 40 --n 128 512``
  (at n = 32 the default is 40 steps, so the defaults row serves);
- at the defaults under bf16 autocast, as the chapter's own methods run: ``--precision auto --n 128``.

``--cap-512 N`` caps the n = 512 runs at the defaults at N pair steps (``max_steps``; default 634:
SetFit's default budget at n = 128, 6.3% of its default at n = 512); the file records the steps
run, the default and the share. Each row records the precision, the seconds of training and
scoring, the library versions and the machine. A row is identified by (n, seed, steps, precision);
the file is rewritten after every run (rows not run this time are kept), so an interrupted run
leaves the finished rows, and ``--seeds`` adds missing seeds later.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import pandas as pd

from mtt_helpers.files import write_atomically
from mtt_helpers.precision import cpu_bf16_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "notebooks", "results", "04_setfit_defaults.csv")
SEEDS = (0, 1, 2)
SIZES = (32, 128, 512)
POOL_SIZE = max(SIZES)
TOPIC_ROWS = 3000  # chapter 04 loads its training data with this topic sample (the tweets are not sampled)


def chapter_samples() -> dict[tuple[int, int], pd.DataFrame]:
    """Chapter 04's labelled samples, drawn by the same calls as the notebook: a pool of 512 tweets per
    seed, and each size's sample drawn from that seed's pool."""
    from mtt_helpers.data import load_task_data, stratified_sample

    data = load_task_data("train", max_per_task={"topic": TOPIC_ROWS}, seed=0)
    if not data.real:
        raise SystemExit(f"{data.source} The results file describes the public datasets: set MTT_DATA_DIR to "
                         "their folder (tweeteval_sentiment/, huffpost_news_category/), or go online to download them.")
    pools = {seed: stratified_sample(data.sentiment, POOL_SIZE, seed=seed) for seed in SEEDS}
    return {(n, seed): stratified_sample(pools[seed], n, seed=seed) for n in SIZES for seed in SEEDS}


def versions() -> dict[str, str]:
    import sentence_transformers
    import setfit
    import torch
    import transformers

    import mtt_helpers

    return {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__, "mtt_helpers": mtt_helpers.__version__,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, bf16: {' '.join(cpu_bf16_flags()) or 'none'}"}


ROW_KEY = ["n", "seed", "steps", "precision"]  # one run: a row with the same key is replaced


def write(rows: list[dict]) -> None:
    """The finished rows, plus the file's rows of other runs."""
    frame = pd.DataFrame(rows)
    if os.path.exists(RESULTS):
        old = pd.read_csv(RESULTS)
        done = set(frame[ROW_KEY].itertuples(index=False, name=None))
        frame = pd.concat([old[[key not in done for key in old[ROW_KEY].itertuples(index=False, name=None)]], frame])
    frame = frame.sort_values(["precision", "n", "steps", "seed"], ascending=[False, True, True, True])
    write_atomically(RESULTS, lambda path: frame.to_csv(path, index=False, float_format="%.6f"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=list(SIZES), choices=SIZES, help="sizes to run (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), choices=SEEDS, help="seeds to run (default: all)")
    parser.add_argument("--max-steps", type=int, default=-1,
                        help="pair steps for every size (default -1: SetFit's default, capped at n = 512 by --cap-512)")
    parser.add_argument("--cap-512", type=int, default=634, help="pair-step cap for n = 512 at the defaults (default 634, "
                        "the default budget at n = 128)")
    parser.add_argument("--precision", choices=["fp32", "auto"], default="fp32",
                        help="fp32 (default: SetFit's own on a CPU) or auto (bf16 autocast where the CPU runs it natively)")
    args = parser.parse_args()
    if args.cap_512 < 1:
        parser.error(f"--cap-512 must be >= 1, got {args.cap_512}")
    if args.max_steps == 0 or args.max_steps < -1:
        parser.error(f"--max-steps must be -1 or positive, got {args.max_steps}")

    from mtt_helpers.data import TASK_LABELS, load_task_data, sample_fingerprint
    from mtt_helpers.notebook import quiet
    from mtt_helpers.training import setfit_default_steps, task_metrics, train_setfit

    shared = versions()  # imports setfit, which turns its own logging up to INFO: before quiet() turns it down
    quiet()
    samples = chapter_samples()
    dev = load_task_data("dev").sentiment
    rows = []
    for n in sorted(set(args.n)):
        for seed in sorted(set(args.seeds)):
            labelled = samples[n, seed]
            default = setfit_default_steps(labelled["label"].tolist())
            if args.max_steps == -1:
                steps = min(args.cap_512, default) if n == 512 else default
            elif args.max_steps >= default:
                print(f"n = {n}: {args.max_steps} steps reach SetFit's default ({default}); the defaults run is that run")
                continue
            else:
                steps = args.max_steps
            start = time.perf_counter()  # training and scoring, as the chapter times each run
            run = train_setfit(labelled["text"].tolist(), labelled["label"].tolist(), seed,
                               max_steps=-1 if steps == default else steps, precision=args.precision)
            if run.steps != steps:
                raise RuntimeError(f"n = {n}, seed {seed}: SetFit ran {run.steps} steps, expected {steps}.")
            metrics = task_metrics(dev["label"], run.predict_labels(dev["text"].tolist()), TASK_LABELS["sentiment"])
            rows.append({"n": n, "seed": seed, "sample_hash": sample_fingerprint(labelled), "default_steps": default,
                         "steps": run.steps, "share_of_default": run.steps / default,
                         "macro_recall": metrics["macro_recall"], "macro_f1": metrics["macro_f1"],
                         "seconds": time.perf_counter() - start, "precision": run.precision, **shared})
            print({k: rows[-1][k] for k in ("n", "seed", "steps", "default_steps", "precision", "macro_recall", "seconds")},
                  flush=True)
            write(rows)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
