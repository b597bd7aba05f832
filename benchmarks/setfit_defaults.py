"""SetFit as its users run it, and chapter 04's recipe at SetFit's budget: the table chapter 04 reads from a file.

    MTT_DATA_DIR=/path/to/data python benchmarks/setfit_defaults.py [--runs NAME ...] [--seeds 0 1 2] [--sizes 32 128]

SetFit's default budget grows with n squared (``mtt_helpers.lowres.setfit_default_steps``): 40 pair steps
at n = 32, 634 at n = 128 and 10,131 at n = 512 on chapter 04's samples, several minutes per n = 128 run
on a laptop CPU. So these runs are made here, once, on the chapter's samples (drawn by the same calls)
and scored on the chapter's dev tweets (a stratified 1,000 of TweetEval's dev set), and the chapter
reads the file this writes, ``notebooks/results/04_setfit_defaults.csv``. The runs, each on seeds 0-2:

- ``setfit-defaults``: SetFit at its defaults, in fp32 (its own precision on a CPU), at n = 32 and 128;
- ``setfit-40``: SetFit at n = 128 stopped at 40 pair steps (6.3% of its default): step-matched to the
  chapter's contrastive method;
- ``recipe-634``: the chapter's recipe (``FewLabelRecipe``) at n = 128 given SetFit's default budget of
  634 steps over the encoder: 40 contrastive steps and 594 joint steps.

Each row records the sample's and the dev tweets' fingerprints, the steps and SetFit's default, dev
macro-recall, the seconds of training, the library versions, the machine and the command that made it.
A row is identified by (method, n, seed); the file is rewritten after every run (rows not run this time
are kept), so an interrupted run leaves the finished rows.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time

import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "notebooks", "results", "04_setfit_defaults.csv")
SEEDS = (0, 1, 2)
POOL_SIZE = 512
RUNS = {"setfit-defaults": "SetFit, defaults", "setfit-40": "SetFit, step-matched (40 steps)",
        "recipe-634": "recipe, 634 steps (SetFit's budget)"}
ROW_KEY = ["method", "n", "seed"]


def chapter_data(folder):
    """Chapter 04's samples (a pool of 512 tweets per seed, each n drawn from it), dev tweets and finance rows."""
    from mtt_core.labels import FINANCE_DATASET
    from mtt_helpers import load_external, load_task_data, stratified_sample

    tweets = load_task_data("train", folder).sentiment
    pools = {seed: stratified_sample(tweets, POOL_SIZE, seed=seed) for seed in range(5)}
    samples = {(n, seed): stratified_sample(pools[seed], n, seed=seed) for n in (32, 128, 512) for seed in range(5)}
    dev = stratified_sample(load_task_data("dev", folder).sentiment, 1000, seed=0)
    finance = stratified_sample(load_external(FINANCE_DATASET, "train", folder), 800, seed=0)
    return samples, dev, finance


def versions() -> dict[str, str]:
    import sentence_transformers
    import setfit
    import torch
    import transformers

    import mtt_helpers
    from mtt_helpers.precision import cpu_bf16_flags

    return {"setfit": setfit.__version__, "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__, "torch": torch.__version__, "mtt_helpers": mtt_helpers.__version__,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                       f"bf16 instructions: {' '.join(cpu_bf16_flags()) or 'none'}"}


def write(rows: list[dict]) -> None:
    """The finished rows, plus the file's rows of other runs."""
    from mtt_core.files import write_atomically

    frame = pd.DataFrame(rows)
    if os.path.exists(RESULTS):
        old = pd.read_csv(RESULTS)
        done = set(frame[ROW_KEY].itertuples(index=False, name=None))
        frame = pd.concat([old[[key not in done for key in old[ROW_KEY].itertuples(index=False, name=None)]], frame])
    frame = frame.sort_values(["method", "n", "seed"], kind="stable")
    write_atomically(RESULTS, lambda path: frame.to_csv(path, index=False, float_format="%.6f"), overwrite=True)


def run_recipe(encoder, sample, seed, finance, steps, cache):
    from mtt_core.labels import SENTIMENT_LABELS, TOPIC_LABELS
    from mtt_helpers import MultiTaskConfig, MultiTaskSentenceTransformer, multitask_frame, set_seed
    from mtt_helpers.lowres import FewLabelRecipe, few_label_recipe

    set_seed(seed)
    model = MultiTaskSentenceTransformer(copy.deepcopy(encoder), MultiTaskConfig(
        tasks={"topic": TOPIC_LABELS, "sentiment": SENTIMENT_LABELS, "finance": SENTIMENT_LABELS}))
    recipe = FewLabelRecipe(seed=seed)
    recipe.joint_steps = steps - recipe.contrastive_steps
    related = multitask_frame({"finance": SENTIMENT_LABELS}, finance=finance)
    return few_label_recipe(model, sample, related, recipe, cache), recipe.encoder_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS), help="which runs (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), choices=SEEDS, help="seeds (default: all)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128], choices=[32, 128],
                        help="sample sizes (default: both; setfit-40 and recipe-634 run at 128 only)")
    args = parser.parse_args()

    from mtt.data import locate_data
    from mtt_helpers import EmbeddingCache, MultiTaskSentenceTransformer, load_encoder, quiet, set_seed
    from mtt_helpers.data import sample_fingerprint
    from mtt_helpers.lowres import setfit_default_steps, train_setfit
    from mtt_helpers.precision import resolve_precision
    from mtt_helpers.training import predict_labels, task_metrics

    shared = versions()  # imports setfit, which turns its own logging up to INFO: before quiet() turns it down
    quiet()
    found = locate_data()
    if found.folder is None:
        raise SystemExit(f"{found.origin} The results file describes the public datasets.")
    samples, dev, finance = chapter_data(found.folder)
    made_by = (f"Made by `python benchmarks/setfit_defaults.py` on {shared['machine']}, "
               f"{time.strftime('%Y-%m-%d')}; setfit {shared['setfit']}, torch {shared['torch']}.")
    cache = EmbeddingCache()
    if "recipe-634" in args.runs:  # as in the chapter: the layers below the tuned ones run once per text, untimed
        set_seed(0)
        encoder = load_encoder()  # chapter 04 loads it once after set_seed(0), then copies it per run
        texts = [t for seed in args.seeds for t in samples[128, seed]["text"]] + finance["text"].tolist() + dev["text"].tolist()
        cache.hidden_states(MultiTaskSentenceTransformer(encoder), texts, layer=4)
    rows = []
    plan = [(name, n) for name in args.runs for n in ((32, 128) if name == "setfit-defaults" else (128,)) if n in args.sizes]
    for name, n in plan:
        for seed in sorted(set(args.seeds)):
            labelled = samples[n, seed]
            default = setfit_default_steps(labelled["label"].tolist())
            start = time.perf_counter()
            if name == "recipe-634":
                model, steps = run_recipe(encoder, labelled, seed, finance, 634, cache)
                seconds = time.perf_counter() - start  # training only, as the chapter times its runs
                predicted = predict_labels(model, None, "sentiment", cache.embeddings(model, dev["text"].tolist()))
                precision = resolve_precision("auto", model.device)
            else:
                run = train_setfit(labelled["text"].tolist(), labelled["label"].tolist(), seed,
                                   max_steps=40 if name == "setfit-40" else -1)
                seconds = time.perf_counter() - start
                steps, precision = run.steps, run.precision
                predicted = run.predict_labels(dev["text"].tolist())
            rows.append({"method": RUNS[name], "n": n, "seed": seed, "sample_hash": sample_fingerprint(labelled),
                         "dev_hash": sample_fingerprint(dev), "steps": steps, "default_steps": default,
                         "share_of_default": steps / default,
                         "macro_recall": task_metrics(dev["label"], predicted)["macro_recall"],
                         "seconds": seconds, "precision": precision, **shared, "made_by": made_by})
            print({key: rows[-1][key] for key in ("method", "n", "seed", "steps", "macro_recall", "seconds")}, flush=True)
            write(rows)
    print(f"wrote {RESULTS}", file=sys.stderr)


if __name__ == "__main__":
    main()
